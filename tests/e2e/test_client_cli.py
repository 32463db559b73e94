"""The `recu` client commands against a real uvicorn server over loopback HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import os

import httpx
import pytest
from typer.testing import CliRunner

from recu_cli.local_service import free_port, local_service
from recu_cli.main import app
from recu_db import queue, results
from recu_db.engine import make_engine, make_sessionmaker

runner = CliRunner()


@pytest.fixture
def server(tmp_path):
    """`python -m service` on a free port with its own SQLite file; stopped afterwards."""
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with local_service(tmp_path / "service", database_url=url, workers=0) as api:
        engine = make_engine(url)
        yield api, make_sessionmaker(engine)
        engine.dispose()


def test_submit_list_status_logs_cancel_download(server, tmp_path):
    api, db = server
    submitted = runner.invoke(app, ["submit", "--epochs", "2", "--tau-s", "0.9", "--api", api])
    assert submitted.exit_code == 0, submitted.output
    assert "job 1 queued" in submitted.output

    rejected = runner.invoke(app, ["submit", "--tau-s", "0.3", "--api", api])
    assert rejected.exit_code == 2
    assert "tau.tau_s" in rejected.output

    lease = queue.claim(db, "w", lease_s=60)  # a worker picks it up and writes back
    queue.record_epoch(db, lease, 1, {"test_acc": 0.75})
    results.append_logs(db, lease, ["epoch 1 done [0.75]"])
    payload = os.urandom(2_500_000)
    ckpt = results.store_checkpoint(db, lease, 1, {}, io.BytesIO(payload), keep=1)

    listing = runner.invoke(app, ["jobs", "--api", api])
    assert listing.exit_code == 0
    assert "running" in listing.output
    assert "75.00%" in listing.output
    status = runner.invoke(app, ["status", "1", "--api", api])
    assert json.loads(status.output)["spec"]["tau"]["tau_s"] == 0.9
    assert "epoch 1 done [0.75]" in runner.invoke(app, ["logs", "1", "--api", api]).output

    target = tmp_path / "out" / "ckpt.safetensors"
    got = runner.invoke(app, ["download", str(ckpt.id), "-o", str(target), "--api", api])
    assert got.exit_code == 0, got.output
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()

    cancelled = runner.invoke(app, ["cancel", "1", "--api", api])
    assert "job 1 cancelling" in cancelled.output
    missing = runner.invoke(app, ["download", "999", "-o", str(tmp_path / "x"), "--api", api])
    assert missing.exit_code == 1
    assert not (tmp_path / "x").exists()


def test_unreachable_service_is_a_clear_error():
    result = runner.invoke(app, ["jobs", "--api", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "cannot reach the service" in result.output


def test_twenty_concurrent_submits_with_one_idempotency_key_make_one_job(server):
    from concurrent.futures import ThreadPoolExecutor

    api, _ = server

    def post(_):
        response = httpx.post(
            f"{api}/jobs", json={"epochs": 1}, headers={"Idempotency-Key": "same"}, timeout=30
        )
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20)))
    assert {job_id for _, job_id in answers} == {1}
    assert sorted(code for code, _ in answers) == [200] * 19 + [201]
    assert httpx.get(f"{api}/jobs").json()["total"] == 1
