"""``python -m service``: serve the API, the very command ``recu serve`` runs (see
recu_cli/processes.py for its options and settings)."""

from recu_cli.main import run

if __name__ == "__main__":
    run("serve", prog_name="python -m service")
