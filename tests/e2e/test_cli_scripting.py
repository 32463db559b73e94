"""Scripting the `recu` client against a real uvicorn server over loopback HTTP: --json
prints what the API answers and nothing else on stdout; every error goes to stderr with
its documented exit code (recu_cli.errors.ExitCode); --token beside RECU_API_TOKEN;
--ranks and its deprecated alias --workers; sweep-status names each trial's job."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from typer.testing import CliRunner

from recu_cli.errors import ExitCode
from recu_cli.local_service import LocalService, free_port
from recu_cli.main import app
from recu_db import queue, results
from recu_db.states import JobState
from recu_db.trials import start_trial

runner = CliRunner()


@pytest.fixture
def service(cli_service):
    """The running service, its database's sessions and URL (tests/e2e/conftest.py)."""
    return cli_service.running, cli_service.db, cli_service.url


def _api(running: LocalService, path: str) -> object:
    return httpx.get(f"{running.api}{path}", headers=running.headers).json()


def _json(args: list[str]) -> object:
    """The command's stdout parsed as JSON (it must hold that only), exit 0."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_of_every_read_command_is_the_apis_answer(service, tmp_path):
    running, db, url = service
    job = _json(["submit", "--epochs", "2", "--json"])
    assert job["state"] == "queued"
    assert job["spec"]["epochs"] == 2
    lease = queue.claim(db, "w", lease_s=60)
    queue.record_epoch(db, lease, 1, {"test_acc": 0.625, "best_test_acc": 0.625, "best_epoch": 1})
    results.append_logs(db, lease, ["epoch 1 test acc 62.5%"])
    results.store_checkpoint(db, lease, 1, {"test_acc": 0.625}, io.BytesIO(b"x" * 1000), keep=2)
    swept = _json(["sweep", "--epochs", "1", "--samples", "2", "--json"])

    assert _json(["jobs", "--json"]) == _api(running, "/jobs?limit=20")
    assert _json(["status", str(job["id"]), "--json"]) == _api(running, f"/jobs/{job['id']}")
    assert _json(["logs", str(job["id"]), "--json"]) == _api(
        running, f"/jobs/{job['id']}/logs?limit=10000"
    )
    listed = _json(["checkpoints", str(job["id"]), "--json"])
    assert listed == _api(running, f"/jobs/{job['id']}/checkpoints")
    assert [(c["epoch"], c["best"]) for c in listed] == [(1, True)]
    assert _json(["sweeps", "--json"]) == _api(running, "/sweeps?limit=20")
    assert _json(["sweep-status", str(swept["id"]), "--json"]) == _api(
        running, f"/sweeps/{swept['id']}?max_points=1"
    )
    assert _json(["whoami", "--json"]) == _api(running, "/whoami")
    tokens = _json(["token", "list", "--json", "--database-url", url])
    assert [(t["user"], t["role"], t["revoked_at"]) for t in tokens] == [("local", "user", None)]


def test_errors_go_to_stderr_with_their_exit_codes(service, tmp_path, monkeypatch):
    running, _, _ = service
    missing = runner.invoke(app, ["status", "999", "--json"])
    assert (missing.exit_code, missing.stdout) == (ExitCode.NOT_FOUND, "")
    assert "not found: no job 999" in missing.stderr

    monkeypatch.delenv("RECU_API_TOKEN")
    no_token = runner.invoke(app, ["jobs", "--json"])
    assert (no_token.exit_code, no_token.stdout) == (ExitCode.AUTH, "")
    assert "not authorised" in no_token.stderr
    assert "--token" in no_token.stderr
    bad = runner.invoke(app, ["jobs", "--token", "recu_nope_nope"])
    assert (bad.exit_code, bad.stdout) == (ExitCode.AUTH, "")
    given = runner.invoke(app, ["whoami", "--token", running.token])  # --token, no variable
    assert given.exit_code == 0, given.output
    assert given.stdout.startswith("local (user)")

    away = f"http://127.0.0.1:{free_port()}"
    for args in (["jobs"], ["status", "1", "--json"], ["download", "1"], ["manifest", "1"]):
        gone = runner.invoke(app, [*args, "--api", away, "--token", running.token])
        assert (gone.exit_code, gone.stdout) == (ExitCode.UNREACHABLE, ""), args
        assert f"cannot reach the service at {away}" in gone.stderr

    broken = tmp_path / "job.json"
    broken.write_text('{"epochs": 3,\n  "model": resnet20}\n')
    malformed = runner.invoke(app, ["submit", "--spec", str(broken)])
    assert (malformed.exit_code, malformed.stdout) == (ExitCode.USAGE, "")
    assert malformed.stderr.strip() == (
        f"error: spec file {broken}: not valid JSON at line 2, column 12: Expecting value "
        "(YAML files end in .yaml or .yml)"
    )
    yaml_file = tmp_path / "job.yaml"
    yaml_file.write_text("epochs: [3\nmodel: x\n")
    bad_yaml = runner.invoke(app, ["submit", "--spec", str(yaml_file)])
    assert bad_yaml.exit_code == ExitCode.USAGE
    assert len(bad_yaml.stderr.strip().splitlines()) == 1
    assert f"spec file {yaml_file}: not valid YAML at line 2, column" in bad_yaml.stderr
    binary = tmp_path / "blob.json"
    binary.write_bytes(bytes(range(128, 256)))
    not_text = runner.invoke(app, ["submit", "--spec", str(binary)])
    assert not_text.exit_code == ExitCode.USAGE
    assert not_text.stderr.strip() == f"error: spec file {binary}: not a text file (not UTF-8)"
    rejected = runner.invoke(app, ["submit", "--set", "priority=5000", "--token", running.token])
    assert (rejected.exit_code, rejected.stdout) == (ExitCode.USAGE, "")
    assert "rejected: priority" in rejected.stderr
    assert _api(running, "/jobs")["total"] == 0  # type: ignore[index]  # nothing submitted


def test_ranks_and_the_deprecated_workers_alias_set_the_jobs_ddp_ranks(service):
    ranked = runner.invoke(app, ["submit", "--epochs", "1", "--ranks", "2", "--json"])
    assert ranked.exit_code == 0, ranked.output
    assert json.loads(ranked.stdout)["spec"]["resources"]["num_workers"] == 2
    assert ranked.stderr == ""

    old = runner.invoke(app, ["submit", "--epochs", "1", "--workers", "3", "--json"])
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout)["spec"]["resources"]["num_workers"] == 3
    assert "--workers is deprecated here: use --ranks" in old.stderr

    both = runner.invoke(app, ["submit", "--ranks", "2", "--workers", "2"])
    assert both.exit_code == ExitCode.USAGE
    assert "give --ranks only" in both.stderr
    swept = runner.invoke(app, ["sweep", "--epochs", "1", "--ranks", "2", "--json"])
    assert swept.exit_code == 0, swept.output
    assert json.loads(swept.stdout)["spec"]["base"]["resources"]["num_workers"] == 2
    assert "--workers" not in runner.invoke(app, ["submit", "--help"]).stdout  # hidden


def test_sweep_status_names_each_trials_job_the_other_commands_take(service):
    _, db, _ = service
    swept = _json(
        ["sweep", "--epochs", "2", "--space", "tau.tau_s=grid:0.85,0.9", "--samples", "1", "--json"]
    )
    lease = queue.claim(db, "w", lease_s=60)
    trial = start_trial(db, lease, "0")
    queue.record_epoch(db, trial, 1, {"test_acc": 0.8125})
    queue.finish(db, trial, JobState.SUCCEEDED)
    shown = runner.invoke(app, ["sweep-status", str(swept["id"])])
    assert shown.exit_code == 0, shown.output
    trial_jobs = [t["id"] for t in swept["trials"]]
    rows = [line for line in shown.stdout.splitlines() if "│" in line and "queued" in line]
    assert len(rows) == 1
    assert str(trial_jobs[1]) in rows[0].split("│")[2]  # the "job" column
    assert "81.2%" in shown.stdout  # test_acc as the CLI shows accuracies
    status = runner.invoke(app, ["status", str(trial.job_id)])
    assert status.exit_code == 0, status.output
    assert f"job {trial.job_id} succeeded (trial," in status.stdout
