"""The `recu` client commands against a real uvicorn server over loopback HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import os

import httpx
import pytest
from typer.testing import CliRunner

from recu_cli.client import auth_headers
from recu_cli.errors import ExitCode
from recu_cli.local_service import free_port, local_service
from recu_cli.main import app
from recu_db import queue, results
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.tokens import create_token

runner = CliRunner()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """`python -m service` on a free port with its own SQLite file; stopped afterwards.
    The client commands find its token in RECU_API_TOKEN."""
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with local_service(tmp_path / "service", database_url=url, workers=0) as service:
        monkeypatch.setenv("RECU_API_TOKEN", service.token)
        engine = make_engine(url)
        yield service.api, make_sessionmaker(engine)
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
    assert "75.0%" in listing.output
    status = runner.invoke(app, ["status", "1", "--json", "--api", api])
    assert json.loads(status.stdout)["spec"]["tau"]["tau_s"] == 0.9
    summary = runner.invoke(app, ["status", "1", "--api", api]).stdout
    assert "job 1 running (train, attempt 1 of 3, priority 0)" in summary
    assert "test accuracy: last 75.0%" in summary
    assert "epoch 1 done [0.75]" in runner.invoke(app, ["logs", "1", "--api", api]).output

    target = tmp_path / "out" / "ckpt.safetensors"
    got = runner.invoke(app, ["download", str(ckpt.id), "-o", str(target), "--api", api])
    assert got.exit_code == 0, got.output
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()

    cancelled = runner.invoke(app, ["cancel", "1", "--api", api])
    assert "job 1 cancelling" in cancelled.output
    missing = runner.invoke(app, ["download", "999", "-o", str(tmp_path / "x"), "--api", api])
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert "no checkpoint 999" in missing.stderr
    assert missing.stdout == ""
    assert not (tmp_path / "x").exists()


def test_config_and_set_reach_every_field_of_a_stored_job_and_sweep(server, tmp_path):
    api, _ = server
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"epochs": 3, "checkpoint": {"every_epochs": 3}}))
    submitted = runner.invoke(
        app,
        [
            *("submit", "--config", str(job_file), "--epochs", "2", "--api", api),
            *("--set", "resources.num_workers=2", "--set", "resources.cpus_per_worker=0.5"),
            *("--set", "priority=5", "--set", "max_attempts=1"),
        ],
    )
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(runner.invoke(app, ["status", "1", "--json", "--api", api]).stdout)
    assert job["spec"]["resources"]["num_workers"] == 2
    assert job["spec"]["resources"]["cpus_per_worker"] == 0.5
    assert (job["spec"]["epochs"], job["spec"]["checkpoint"]["every_epochs"]) == (2, 3)
    assert (job["priority"], job["max_attempts"]) == (5, 1)

    typo = runner.invoke(app, ["submit", "--set", "resources.num_workerz=2", "--api", api])
    assert typo.exit_code == 2  # refused before any request
    assert "unknown field 'resources.num_workerz'; resources has: num_workers," in typo.output
    refused = runner.invoke(app, ["submit", "--set", "priority=5000", "--api", api])
    assert refused.exit_code == 2  # the queue's own fields are checked by the API
    assert "priority" in refused.output
    assert httpx.get(f"{api}/jobs", headers=auth_headers()).json()["total"] == 1

    swept = runner.invoke(
        app,
        [
            *("sweep", "--epochs", "2", "--api", api),
            *("--set", 'space.tau.tau_s={"kind": "grid", "values": [0.85, 0.9]}'),
            *("--set", "base.optimizer.lr=0.05", "--set", "scheduler.grace_period=2"),
        ],
    )
    assert swept.exit_code == 0, swept.output
    sweep = httpx.get(f"{api}/sweeps/2", headers=auth_headers()).json()
    assert sweep["spec"]["space"] == {"tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]}}
    assert sweep["spec"]["base"]["optimizer"]["lr"] == 0.05
    assert sweep["spec"]["base"]["epochs"] == 2
    assert sweep["spec"]["scheduler"]["grace_period"] == 2


def test_unreachable_service_is_a_clear_error():
    result = runner.invoke(app, ["jobs", "--api", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "cannot reach the service" in result.stderr
    assert result.stdout == ""


def test_twenty_concurrent_submits_with_one_idempotency_key_make_one_job(server):
    from concurrent.futures import ThreadPoolExecutor

    api, _ = server

    def post(_):
        response = httpx.post(
            f"{api}/jobs",
            json={"epochs": 1},
            headers={"Idempotency-Key": "same", **auth_headers()},
            timeout=30,
        )
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20)))
    assert {job_id for _, job_id in answers} == {1}
    assert sorted(code for code, _ in answers) == [200] * 19 + [201]
    assert httpx.get(f"{api}/jobs", headers=auth_headers()).json()["total"] == 1


def test_sweep_commands_submit_list_follow_and_cancel(server):
    from recu_db.states import JobState
    from recu_db.trials import end_open_trials, start_trial

    api, db = server
    submitted = runner.invoke(
        app,
        [
            *("sweep", "--epochs", "2", "--samples", "2", "--api", api),
            *("--space", "tau.tau_s=uniform:0.85:0.9", "--space", "optimizer.lr=grid:0.05,0.1"),
        ],
    )
    assert submitted.exit_code == 0, submitted.output
    assert "sweep 1 queued: 4 trials" in submitted.output
    paper = runner.invoke(app, ["sweep", "--epochs", "2", "--samples", "3", "--api", api])
    assert "sweep 6 queued: 3 trials" in paper.output  # the paper's tau ranges by default
    assert (
        httpx.get(f"{api}/sweeps/6", headers=auth_headers()).json()["spec"]["space"]["tau.tau_e"][
            "low"
        ]
        == 0.96
    )

    rejected = runner.invoke(app, ["sweep", "--space", "model=grid:resnet18", "--api", api])
    assert rejected.exit_code == 2
    assert "space.model: cannot search 'model'" in rejected.output
    malformed = runner.invoke(app, ["sweep", "--space", "tau.tau_s=normal:0.9", "--api", api])
    assert malformed.exit_code == 2
    assert "unknown kind 'normal'" in malformed.output

    listing = runner.invoke(app, ["sweeps", "--api", api])
    assert "2 sweep(s)" in listing.output
    assert "4 queued" in listing.output

    # the sweep runs one trial to the end and is finished: the live view shows the best
    lease = queue.claim(db, "w", lease_s=30)
    trial = start_trial(db, lease, "1")
    queue.record_epoch(db, trial, 1, {"test_acc": 0.5})
    queue.record_epoch(db, trial, 2, {"test_acc": 0.75})
    queue.finish(db, trial, JobState.SUCCEEDED)
    end_open_trials(db, lease, JobState.STOPPED, "the sweep ended")
    queue.finish(db, lease, JobState.SUCCEEDED)
    followed = runner.invoke(app, ["sweep-status", "1", "--wait", "--api", api])
    assert followed.exit_code == 0, followed.output
    assert (
        f"succeeded: 3 cancelled, 1 succeeded; best trial 1 (job {trial.job_id}, test_acc 75.0%)"
        in followed.output
    )
    assert "2/2" in followed.output

    cancelled = runner.invoke(app, ["sweep-cancel", "6", "--api", api])
    assert "sweep 6 cancelled" in cancelled.output


def test_whoami_names_the_tokens_user_and_role(server, monkeypatch):
    api, db = server
    me = runner.invoke(app, ["whoami", "--api", api])
    assert me.exit_code == 0, me.output
    assert me.output.strip() == f"local (user) at {api}"  # local_service's token
    admin = create_token(db, "ops-token", user="ops", admin=True)
    monkeypatch.setenv("RECU_API_TOKEN", admin)
    assert runner.invoke(app, ["whoami", "--api", api]).output.strip() == f"ops (admin) at {api}"
    monkeypatch.setenv("RECU_API_TOKEN", "recu_nope_nope")
    refused = runner.invoke(app, ["whoami", "--api", api])
    assert refused.exit_code == ExitCode.AUTH
    assert "not authorised" in refused.stderr
