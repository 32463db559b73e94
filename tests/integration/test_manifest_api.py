"""GET /jobs/{id}/manifest on the real database (SQLite and PostgreSQL): 409 until the
worker's training starts, then the manifest rank 0 recorded (through the worker's own
per-rank function, no Ray around it); the write is fenced by the lease."""

from __future__ import annotations

import subprocess

import pytest
import torch
from fastapi.testclient import TestClient

from recu_core.checkpoint import load_checkpoint
from recu_db import queue, results
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.states import JobState
from service.app import create_app
from service.config import ServiceSettings
from tests.api_client import bearer, token_for

JOB = {
    "model": "resnet20",
    "dataset": {"name": "digits", "num_train": 64, "num_test": 32},
    "epochs": 1,
    "batch_size": 32,
    "seed": 3,
}


@pytest.fixture
def client(database_url, tmp_path):
    settings = ServiceSettings(database_url=database_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(token_for(client, "alice")))
        yield client


def test_the_manifest_is_recorded_when_training_starts_and_served_to_the_owner(
    client, database_url, tmp_path
):
    from workers.train_loop import run_training

    job_id = client.post("/jobs", json=JOB).json()["id"]
    missing = client.get(f"/jobs/{job_id}/manifest")
    assert missing.status_code == 409  # the job exists; its manifest does not yet
    assert "has no manifest yet" in missing.json()["detail"]
    assert "queued" in missing.json()["detail"]

    engine = make_engine(database_url)
    db = make_sessionmaker(engine)
    try:
        lease = queue.claim(db, "w", lease_s=120)
        assert lease is not None
        run_training(lease, database_url=database_url, lease_s=120, rank=0, report=lambda _: None)
        assert queue.finish(db, lease, JobState.SUCCEEDED)
        stale = results.record_manifest(db, lease, {"recu_version": "forged"})
    finally:
        engine.dispose()
    assert stale is False  # the lease ended: nothing is written

    answer = client.get(f"/jobs/{job_id}/manifest")
    assert answer.status_code == 200
    manifest = answer.json()
    assert manifest["attempt"] == 1
    assert manifest["seed"] == 3
    assert manifest["packages"]["torch"] == torch.__version__
    assert manifest["device"]["type"] == "cpu"
    assert manifest["dataset"]["train_examples"] == 64
    assert manifest["recipe"]["model"] == "resnet20"
    assert manifest["recipe"]["epochs"] == 1
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the tests run from a checkout: its commit is recorded
        assert manifest["git_commit"] == head.stdout.strip()
    # the run's checkpoint carries the same manifest
    ckpt = client.get(f"/jobs/{job_id}/checkpoints").json()[-1]
    path = tmp_path / "ckpt.safetensors"
    path.write_bytes(client.get(f"/checkpoints/{ckpt['id']}/download").content)
    carried = load_checkpoint(path).manifest["run"]
    assert carried == {k: v for k, v in manifest.items() if k not in ("attempt", "recorded_at")}

    other = client.get(f"/jobs/{job_id}/manifest", headers=bearer(token_for(client, "mallory")))
    assert other.status_code == 404
    assert client.get("/jobs/999999/manifest").status_code == 404
