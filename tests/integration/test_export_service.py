"""The export through its two doors: ``recu export`` / ``recu evaluate model.bnn`` and
POST then GET /checkpoints/{id}/export (an export job packs it in a worker, torch never
in the API)."""

from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from recu_cli.main import app
from recu_core.checkpoint import sha256_file
from recu_core.export.bnn_file import read_bnn
from recu_db import queue, results
from recu_db.states import JobState
from service.config import ServiceSettings
from tests.api_client import api_client
from workers.export import run_export
from workers.trainer import TrainingCodeError

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


def _run_export(db):
    lease = queue.claim(db, "w", lease_s=60)
    assert lease is not None
    assert lease.kind == "export"
    try:
        run_export(lease, db)
    except TrainingCodeError as err:
        queue.finish(db, lease, JobState.FAILED, error=str(err))
        return str(err)
    queue.finish(db, lease, JobState.SUCCEEDED)
    return None


def test_api_export_queues_a_job_whose_stored_bnn_get_serves(trained, sqlite_database):
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
        none = client.get(f"/checkpoints/{good.id}/export")
        assert none.status_code == 404
        assert f"POST /checkpoints/{good.id}/export" in none.json()["detail"]
        queued = client.post(f"/checkpoints/{good.id}/export")
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["job_id"]
        assert client.post(f"/checkpoints/{good.id}/export").json()["job_id"] == job_id
        pending = client.get(f"/checkpoints/{good.id}/export")
        assert pending.status_code == 202
        assert pending.json()["job_id"] == job_id
        assert client.get(f"/jobs/{job_id}").json()["state"] == "queued"
        assert _run_export(db) is None
        response = client.get(f"/checkpoints/{good.id}/export")
        assert response.status_code == 200, response.text
        _, manifest = read_bnn(response.content)
        assert manifest["source_sha256"] == good.sha256
        assert response.headers["x-source-checkpoint-sha256"] == good.sha256
        assert response.headers["etag"] == f'"{response.headers["x-export-sha256"]}"'
        assert len(response.content) < trained.stat().st_size / 10
        stored = client.post(f"/checkpoints/{good.id}/export")
        assert stored.status_code == 200
        assert stored.json() == {
            "checkpoint_id": good.id,
            "sha256": response.headers["x-export-sha256"],
            "size": len(response.content),
            "download_url": f"/checkpoints/{good.id}/export",
        }
        refused = client.post(f"/checkpoints/{bad.id}/export")
        assert refused.status_code == 202
        error = _run_export(db)
        assert error is not None
        assert f"cannot export checkpoint {bad.id}" in error
        failed = client.get(f"/jobs/{refused.json()['job_id']}").json()
        assert failed["state"] == "failed"
        assert client.get(f"/checkpoints/{bad.id}/export").status_code == 404
        assert client.post(f"/checkpoints/{bad.id}/export").json()["job_id"] != failed["id"]
        assert client.get("/checkpoints/999/export").status_code == 404
        assert client.post("/checkpoints/999/export").status_code == 404
