"""The export through its two doors: ``recu export`` / ``recu evaluate model.bnn`` and
GET /checkpoints/{id}/export (packing in a child process, torch never in the API)."""

from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from recu_cli.main import app
from recu_core.checkpoint import sha256_file
from recu_core.export.bnn_file import read_bnn
from recu_db import queue, results
from service.config import ServiceSettings
from tests.api_client import api_client

runner = CliRunner()


@pytest.fixture
def trained(trained_checkpoint):
    return trained_checkpoint


def test_cli_export_then_evaluate_the_packed_file_gives_the_float_accuracy(trained, tmp_path):
    target = tmp_path / "model.bnn"
    exported = runner.invoke(app, ["export", str(trained), "-o", str(target)])
    assert exported.exit_code == 0, exported.output
    assert "x smaller" in exported.output
    assert read_bnn(target.read_bytes())[1]["source_sha256"] == sha256_file(trained)
    float_run = runner.invoke(app, ["evaluate", str(trained), "--device", "cpu"])
    packed_run = runner.invoke(app, ["evaluate", str(target)])
    assert packed_run.exit_code == 0, packed_run.output
    assert "test accuracy" in packed_run.output
    assert packed_run.output == float_run.output
    missing = runner.invoke(app, ["export", str(tmp_path / "nope.safetensors"), "-o", "x.bnn"])
    assert missing.exit_code == 2
    assert "no checkpoint" in missing.output


def test_api_export_packs_a_stored_checkpoint_and_refuses_what_is_not_one(trained, sqlite_database):
    db = sqlite_database.db
    with api_client(ServiceSettings(database_url=sqlite_database.url)) as client:
        client.post("/jobs", json={"epochs": 2})
        lease = queue.claim(db, "w", lease_s=60)
        good = results.store_checkpoint(
            db, lease, 1, {"test_acc": 0.5}, io.BytesIO(trained.read_bytes()), keep=5
        )
        bad = results.store_checkpoint(
            db, lease, 2, {"test_acc": 0.5}, io.BytesIO(b"not a checkpoint"), keep=5
        )
        response = client.get(f"/checkpoints/{good.id}/export")
        assert response.status_code == 200, response.text
        _, manifest = read_bnn(response.content)
        assert manifest["source_sha256"] == good.sha256
        assert response.headers["x-source-checkpoint-sha256"] == good.sha256
        assert len(response.content) < trained.stat().st_size / 10
        refused = client.get(f"/checkpoints/{bad.id}/export")
        assert refused.status_code == 422
        assert f"cannot export checkpoint {bad.id}" in refused.json()["detail"]
        assert client.get("/checkpoints/999/export").status_code == 404
