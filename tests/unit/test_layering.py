"""The layers import only what they may: recu_core no ray/fastapi/sqlalchemy; recu_db and
the service no torch or ray (the API must never load torch)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("recu_core.train", ("ray", "fastapi", "sqlalchemy")),
        ("recu_core.settings", ("torch", "ray", "fastapi", "sqlalchemy")),
        ("recu_cli.local", ("ray", "fastapi", "sqlalchemy")),
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


def test_nothing_unpickles_or_torch_loads_bytes():
    """Checkpoints are safetensors (tensors and JSON): no torch.load, pickle.load(s) or
    numpy allow_pickle anywhere in the project. The one pickle reader is CIFAR's batch
    loader, whose unpickler resolves only a fixed allow-list of numpy globals."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    allowed = {root / "recu_core" / "data" / "cifar.py"}
    banned = (
        "torch.load(",
        "pickle.load(",
        "pickle.loads(",
        "allow_pickle=True",
        "dill.",
        "joblib.load",
    )
    offenders = [
        f"{path.relative_to(root)}: {needle}"
        for package in ("recu_core", "recu_db", "recu_cli", "service", "workers", "bench")
        for path in (root / package).rglob("*.py")
        if path not in allowed
        for needle in banned
        if needle in path.read_text()
    ]
    assert not offenders, offenders
    cifar = (root / "recu_core" / "data" / "cifar.py").read_text()
    assert "find_class" in cifar
    assert "pickle.loads(" not in cifar
