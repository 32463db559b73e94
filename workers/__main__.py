"""``python -m workers``: consume the job queue with Ray Train, the very command
``recu worker`` runs (see recu_cli/processes.py for its options and settings)."""

from recu_cli.main import run

if __name__ == "__main__":
    run("worker", prog_name="python -m workers")
