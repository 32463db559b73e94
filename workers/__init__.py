"""Queue workers that run jobs on Ray Train: the only package that imports ray."""
