"""`recu compare`, `recu sweep --seeds`, `recu submit --seeds` and the seed groups of
`recu sweep-status`, against a real uvicorn server over loopback HTTP: --json prints the
API's answer, tables show accuracies as `91.5 ± 0.7%`, errors exit with their codes."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from recu_cli.errors import ExitCode
from recu_cli.local_service import LocalService
from recu_cli.main import app
from recu_db import queue
from recu_db.states import JobState
from recu_db.trials import end_trial, start_trial

runner = CliRunner()
WIDE = {"COLUMNS": "240", "NO_COLOR": "1", "TERMINAL_WIDTH": "240"}


@pytest.fixture
def service(cli_service):
    """The running service and its database's sessions (tests/e2e/conftest.py)."""
    return cli_service.running, cli_service.db


def _api(running: LocalService, path: str) -> object:
    return httpx.get(f"{running.api}{path}", headers=running.headers).json()


def _run(args: list[str]):
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    return result


def _json(args: list[str]) -> dict:
    return json.loads(_run(args).stdout)


def test_compare_prints_the_differences_and_each_jobs_accuracy(service):
    running, db = service
    first = _json(["submit", "--epochs", "2", "--json"])["id"]
    second = _json(["submit", "--epochs", "2", "--set", "seed=7", "--json"])["id"]
    lease = queue.claim(db, "w", lease_s=60)
    assert lease.job_id == first
    for epoch, acc, best in ((1, 0.7, 0.7), (2, 0.65, 0.7)):
        figures = {"test_acc": acc, "best_test_acc": best, "best_epoch": 1}
        assert queue.record_epoch(db, lease, epoch, figures)

    ids = [str(first), str(second)]
    assert _json(["compare", *ids, "--json"]) == _api(running, f"/compare?jobs={first},{second}")
    shown = _run(["compare", *ids]).stdout
    (seed_row,) = [line for line in shown.splitlines() if " seed " in line]
    assert seed_row.replace("│", " ").split() == ["seed", "0", "7"]
    (first_row,) = [line for line in shown.splitlines() if f" {first} " in line and "train" in line]
    assert first_row.replace("│", " ").split() == [
        str(first),
        "train",
        "running",
        "2/2",
        "70.0%",
        "1",
        "65.0%",
    ]

    missing = runner.invoke(app, ["compare", str(first), "999"])
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert "no job 999" in missing.stderr
    alone = runner.invoke(app, ["compare", str(first)])
    assert (alone.exit_code, alone.stdout) == (ExitCode.USAGE, "")
    assert "2 to 10 distinct job ids" in alone.stderr
    twice = runner.invoke(app, ["compare", str(first), str(first)])
    assert twice.exit_code == ExitCode.USAGE
    assert f"listed more than once: {first}" in twice.stderr


def test_a_sweep_with_seeds_shows_its_groups_as_mean_and_std(service):
    running, db = service
    created = runner.invoke(
        app,
        [
            "sweep",
            "--epochs", "1",
            "--space", "tau.tau_s=grid:0.85,0.9",
            "--search", "grid",
            "--seeds", "0,1",
            "--rank-by", "group-mean",
        ],
        env=WIDE,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    sweep = _api(running, "/sweeps?limit=1")["items"][0]
    assert f"sweep {sweep['id']} queued: 4 trials (2 point(s) x 2 seed(s))" in created.stdout
    assert (sweep["spec"]["seeds"], sweep["spec"]["rank_by"]) == ([0, 1], "group_mean")
    lease = queue.claim(db, "w", lease_s=60)
    for key, best, last in (
        ("0", 0.90, 0.89),
        ("1", 0.90, 0.90),
        ("2", 0.91, 0.91),
        ("3", 0.92, 0.92),
    ):
        trial = start_trial(db, lease, key)
        assert queue.record_epoch(
            db, trial, 1, {"test_acc": last, "best_test_acc": best, "best_epoch": 1}
        )

    status = _run(["sweep-status", str(sweep["id"])]).stdout
    rows = {
        line.replace("│", " ").split()[0]: line
        for line in status.splitlines()
        if "±" in line or "2/2" in line
    }
    # group 1: best 0.91, 0.92 -> 91.5 ± 0.7% (sample std 0.00707); last the same
    assert "91.5 ± 0.7%" in rows["1"]
    assert rows["1"].replace("│", " ").split()[:4] == ["1", "*", "tau_s=0.9", "0,1"]
    # group 0: best 0.90 twice -> 90.0 ± 0.0%; last 0.89, 0.90 -> 89.5 ± 0.7%
    assert "90.0 ± 0.0%" in rows["0"]
    assert "89.5 ± 0.7%" in rows["0"]
    # the summary line may wrap at the console's width
    assert "best group 1 (by its mean test_acc over seeds)" in " ".join(status.split())
    assert _json(["sweep-status", str(sweep["id"]), "--json"]) == _api(
        running, f"/sweeps/{sweep['id']}?max_points=1"
    )
    bad = runner.invoke(app, ["sweep", "--seeds", "0,x"])
    assert bad.exit_code == ExitCode.USAGE
    assert "expected comma-separated integers" in bad.stderr
    refused = runner.invoke(app, ["sweep", "--rank-by", "group-mean"])
    assert refused.exit_code == ExitCode.USAGE
    assert "give seeds" in refused.stderr


def _run_the_sweep(db, done: threading.Event) -> None:
    """A worker's part: claim the sweep once it is queued, record one epoch per seed,
    end its trials and the sweep."""
    deadline = time.monotonic() + 120
    lease = None
    while lease is None and time.monotonic() < deadline:
        lease = queue.claim(db, "w", lease_s=60)
        time.sleep(0.1)
    assert lease is not None
    for key, acc in (("0", 0.90), ("1", 0.92), ("2", 0.94)):
        trial = start_trial(db, lease, key)
        assert queue.record_epoch(db, trial, 1, {"test_acc": acc, "best_test_acc": acc})
        assert end_trial(db, lease, key, JobState.SUCCEEDED, "")
    assert queue.finish(db, lease, JobState.SUCCEEDED)
    done.set()


def test_submit_with_seeds_submits_a_sweep_of_seeds_and_waits_for_it(service):
    running, db = service
    as_json = _json(["submit", "--epochs", "1", "--seeds", "3,4", "--json"])
    assert [t["params"] for t in as_json["trials"]] == [{"seed": 3}, {"seed": 4}]
    assert as_json["spec"]["scheduler"]["kind"] == "none"
    assert _api(running, "/jobs")["total"] == 0  # no training job: a sweep of seeds
    httpx.post(f"{running.api}/sweeps/{as_json['id']}/cancel", headers=running.headers)

    done = threading.Event()
    worker = threading.Thread(target=_run_the_sweep, args=(db, done), daemon=True)
    worker.start()
    waited = runner.invoke(app, ["submit", "--epochs", "1", "--seeds", "0,1,2", "--wait"], env=WIDE)
    worker.join(timeout=120)
    assert done.is_set()
    assert waited.exit_code == 0, waited.output
    assert "--seeds: submitted a sweep of seeds only (the job once per seed)" in waited.stdout
    assert "queued: 3 trials (1 point(s) x 3 seed(s))" in waited.stdout
    # 0.90, 0.92, 0.94: mean 92.0, sample std 0.02
    assert "92.0 ± 2.0%" in waited.stdout
    bad = runner.invoke(app, ["submit", "--seeds", "1,1"])
    assert bad.exit_code == ExitCode.USAGE
    assert "seeds must be unique" in bad.stderr
