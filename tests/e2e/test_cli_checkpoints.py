"""Finding and fetching a job's checkpoints with the `recu` client against a real uvicorn
server: `submit --wait` names the best and last, `recu checkpoints` lists them,
`recu download --job J --best/--last` (or an id) writes them sha256-checked, and
`download --bnn` waits for the export job (the worker's own export function, run here
as the queue would run it) so that `recu inspect` and `recu evaluate` read the file."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recu_cli.errors import ExitCode
from recu_cli.main import app
from recu_db import queue, results
from recu_db.states import JobState
from tests.helpers import START_S, wait_until

runner = CliRunner()
#: Test accuracy of each epoch of the job the fake-free worker thread below runs.
ACCURACY = {1: 0.5, 2: 0.875, 3: 0.8125}


@pytest.fixture
def service(cli_service):
    """The running service's database sessions (tests/e2e/conftest.py)."""
    return cli_service.db


@pytest.fixture
def in_thread() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Run work on a thread beside the command under test; its failure fails the test."""
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def start(work: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                work()
            except BaseException as err:
                failures.append(err)

        thread = threading.Thread(target=guarded, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    for thread in threads:
        thread.join(timeout=START_S)
    assert not failures, failures


def _claimed(db, kind: str):
    return wait_until(
        lambda: queue.claim(db, "w", lease_s=120), timeout=START_S, message=f"a {kind} job"
    )


def test_submit_wait_names_the_checkpoints_that_download_best_and_last_fetch(
    service, in_thread, tmp_path, monkeypatch
):
    db = service
    payloads = {epoch: os.urandom(300_000) for epoch in ACCURACY}

    def worker() -> None:  # what a queue worker writes, through the same functions
        lease = _claimed(db, "training")
        best = 0
        for epoch, acc in ACCURACY.items():
            best = epoch if acc >= ACCURACY.get(best, 0) else best
            metrics = {"test_acc": acc, "best_test_acc": ACCURACY[best], "best_epoch": best}
            queue.record_epoch(db, lease, epoch, metrics)
            stream = io.BytesIO(payloads[epoch])
            results.store_checkpoint(db, lease, epoch, metrics, stream, keep=1, best_epoch=best)
        queue.finish(db, lease, JobState.SUCCEEDED)

    in_thread(worker)
    waited = runner.invoke(app, ["submit", "--epochs", "3", "--wait"])
    assert waited.exit_code == 0, waited.output
    listed = json.loads(runner.invoke(app, ["checkpoints", "1", "--json"]).stdout)
    best, last = (next(c for c in listed if c["epoch"] == e) for e in (2, 3))
    assert best["best"] is True
    assert last["best"] is False
    assert "job 1 succeeded  best test acc 87.5% (epoch 2), last 81.2%" in waited.stdout
    assert f"checkpoints: best {best['id']} (epoch 2), last {last['id']} (epoch 3)" in (
        waited.stdout
    )
    assert "download: recu download --job 1 --best" in waited.stdout

    table = runner.invoke(app, ["checkpoints", "1"])
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "│" in line}
    assert "87.5%" in rows[str(best["id"])]
    assert "best" in rows[str(best["id"])]
    assert "81.2%" in rows[str(last["id"])]
    assert "last" in rows[str(last["id"])]
    assert "300.0 kB" in rows[str(last["id"])]

    for flag, epoch in (("--best", 2), ("--last", 3)):
        target = tmp_path / f"{flag[2:]}.safetensors"
        got = runner.invoke(app, ["download", "--job", "1", flag, "-o", str(target), "--json"])
        assert got.exit_code == 0, got.output
        written = json.loads(got.stdout)
        assert written["epoch"] == epoch
        assert written["path"] == str(target)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == written["sha256"]
        assert target.read_bytes() == payloads[epoch]

    monkeypatch.chdir(tmp_path)  # no -o: the service's name, in the current folder
    by_id = runner.invoke(app, ["download", str(best["id"])])
    assert by_id.exit_code == 0, by_id.output
    assert (tmp_path / "job1-epoch2.safetensors").read_bytes() == payloads[2]

    for args in (["--best"], [str(best["id"]), "--last"], ["--job", "1"], []):
        wrong = runner.invoke(app, ["download", *args])
        assert (wrong.exit_code, wrong.stdout) == (ExitCode.USAGE, ""), args
    assert runner.invoke(app, ["submit", "--epochs", "1"]).exit_code == 0
    none_yet = runner.invoke(app, ["download", "--job", "2", "--best"])
    assert none_yet.exit_code == ExitCode.NOT_FOUND
    assert "job 2 has no best checkpoint stored yet" in none_yet.stderr


def _run_export(db) -> None:
    """What a queue worker does with an export job (workers/loop.py)."""
    from workers.export import run_export

    lease = _claimed(db, "export")
    assert lease.kind == "export"
    run_export(lease, db)
    queue.finish(db, lease, JobState.SUCCEEDED)


def test_download_bnn_waits_for_the_export_then_inspect_and_evaluate_read_it(
    service, in_thread, trained_checkpoint: Path, tmp_path
):
    db = service
    assert runner.invoke(app, ["submit", "--epochs", "2"]).exit_code == 0
    lease = queue.claim(db, "w", lease_s=120)
    stream = io.BytesIO(trained_checkpoint.read_bytes())
    results.store_checkpoint(db, lease, 2, {"test_acc": 0.5}, stream, keep=1)
    queue.finish(db, lease, JobState.SUCCEEDED)
    target = tmp_path / "model.bnn"

    hurried = runner.invoke(
        app,
        ["download", "--job", "1", "--last", "--bnn", "-o", str(target), "--export-timeout", "0"],
    )
    assert (hurried.exit_code, hurried.stdout) == (ExitCode.TIMED_OUT, "")
    assert "waiting for export job 2 (queued)" in hurried.stderr
    assert "export job 2 is still queued after 0 s; it goes on" in hurried.stderr
    assert not target.exists()

    in_thread(lambda: _run_export(db))
    got = runner.invoke(app, ["download", "--job", "1", "--last", "--bnn", "-o", str(target)])
    assert got.exit_code == 0, got.output
    assert f"-> {target}" in got.stdout

    inspected = runner.invoke(app, ["inspect", str(target)])
    assert inspected.exit_code == 0, inspected.output
    shown = json.loads(inspected.stdout)
    assert shown["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert shown["source_sha256"] == hashlib.sha256(trained_checkpoint.read_bytes()).hexdigest()
    summary = shown["summary"]
    assert summary["model"] == shown["model"] == "resnet20"
    assert summary["binary_layers"] == len(shown["layers"]) > 0
    assert summary["packed_bits"] >= summary["binary_weights"] > 0
    assert summary["packed_bytes"] + summary["other_tensor_bytes"] < shown["size"]

    packed = runner.invoke(app, ["evaluate", str(target)])
    assert packed.exit_code == 0, packed.output
    floated = runner.invoke(app, ["evaluate", str(trained_checkpoint), "--device", "cpu"])
    assert packed.stdout == floated.stdout  # the 1-bit engine scores as the float model
    assert "test accuracy" in packed.stdout
