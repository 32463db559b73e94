"""``python -m recu_core.export CKPT -o OUT [--expected-sha256 HEX]``: write the ``.bnn``
export of a training checkpoint, the very command ``recu export`` runs (the API runs it
in a child process, so that torch never loads in the API's own process; a refusal is one
line on stderr, exit code 2)."""

from recu_cli.main import run

if __name__ == "__main__":
    run("export", prog_name="python -m recu_core.export")
