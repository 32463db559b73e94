"""The data layer: SQLAlchemy 2.0 models, the job queue and its migrations.

Imported by both ``service`` and ``workers``; imports neither torch nor ray.
"""
