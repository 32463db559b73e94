"""The layers import only what they may: recu_core no ray/fastapi/sqlalchemy; recu_db and
the service no torch or ray (the API must never load torch)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("recu_core.train", ("ray", "fastapi", "sqlalchemy")),
        ("recu_core.cli", ("ray", "fastapi", "sqlalchemy")),
        ("recu_db.queue", ("torch", "ray")),
        ("recu_db.migrate", ("torch", "ray")),
        ("service.app", ("torch", "ray")),
    ],
)
def test_module_does_not_import(module, forbidden):
    code = (
        f"import sys, {module}; "
        f"bad = [m for m in {forbidden!r} if m in sys.modules]; "
        "assert not bad, f'imported {bad}'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
