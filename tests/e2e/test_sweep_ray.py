"""Sweeps on real Ray Tune (local instance, CPU): trials planned by the API, run by the
queue worker, ASHA stopping poor trials, histories and checkpoints in the database."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import uuid

import pytest

ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
# the Ray tests share one test process (`--dist loadgroup`, tests/conftest.py)
pytestmark = pytest.mark.xdist_group("ray")


from recu_core.config import DatasetConfig  # noqa: E402
from recu_core.data import load_dataset  # noqa: E402
from recu_core.settings import DataSettings  # noqa: E402
from recu_core.train import evaluate_accuracy, load_trained_model  # noqa: E402
from service.config import ServiceSettings  # noqa: E402
from tests.api_client import api_client  # noqa: E402
from tests.helpers import (  # noqa: E402
    START_S,
    assert_ray_cpus_released,
    ray_actors,
    wait_until,
)
from workers.loop import WorkerSettings, serve  # noqa: E402

DIGITS = {"name": "digits", "num_train": 1024, "num_test": 256}
BASE = {
    "dataset": DIGITS,
    "batch_size": 64,
    "epochs": 3,
    "kernels": "eager",
    "checkpoint": {"every_epochs": 1, "keep": 1},
}
PAPER = {
    "tau.tau_s": {"kind": "uniform", "low": 0.85, "high": 0.94},
    "tau.tau_e": {"kind": "uniform", "low": 0.96, "high": 0.999},
}


@pytest.fixture
def service(tmp_path, sqlite_database):
    url = sqlite_database.url
    with api_client(ServiceSettings(database_url=url)) as client:
        yield client, WorkerSettings(database_url=url, runs_dir=tmp_path / "runs", lease_s=30)


def test_sweep_runs_its_trials_asha_stops_the_poor_ones_best_checkpoint_evaluates(
    service, local_ray, tmp_path
):
    client, settings = service
    body = {
        "base": BASE,
        # a hopeless learning rate in half the trials gives ASHA something to stop
        "space": {**PAPER, "optimizer.lr": {"kind": "grid", "values": [0.05, 1e-5]}},
        "num_samples": 2,
        "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
    }
    sweep = client.post("/sweeps", json=body).json()
    assert len(sweep["trials"]) == 4

    serve(settings, exit_when_idle=True)

    view = client.get(f"/sweeps/{sweep['id']}").json()
    assert view["state"] == "succeeded", (view["error"], [t["error"] for t in view["trials"]])
    states = [t["state"] for t in view["trials"]]
    assert set(states) <= {"succeeded", "stopped"}, view["trials"]
    assert "stopped" in states
    assert "succeeded" in states
    trials = view["trials"]
    for trial in trials:  # every epoch a trial ran is recorded, in order, once
        epochs = [m["epoch"] for m in trial["metrics"]]
        assert epochs == list(range(1, trial["current_epoch"] + 1))
        assert trial["current_epoch"] >= 1
    assert all(t["current_epoch"] == 3 for t in trials if t["state"] == "succeeded")
    for trial in (t for t in trials if t["state"] == "stopped"):
        # ASHA (grace period 1, reduction factor 2, max_t 3 epochs) decides at its rungs,
        # epochs 1 and 2: a stopped trial ran at least the grace period, never the last epoch
        rung = trial["current_epoch"]
        assert rung in (1, 2), trial
        # it stops a trial whose result at a rung is below the median of the results
        # recorded there before it; the best of those went on: some trial that ran past
        # the rung did strictly better at it
        went_on = [t["metrics"][rung - 1]["test_acc"] for t in trials if t["current_epoch"] > rung]
        assert went_on, trial
        assert trial["metrics"][-1]["test_acc"] < max(went_on), (trial, went_on)

    best = view["best"]
    finals = {t["id"]: t["metrics"][-1]["test_acc"] for t in view["trials"]}
    assert best["value"] == max(finals.values())
    assert best["params"]["optimizer.lr"] == 0.05
    ckpt = best["checkpoint"]
    data = client.get(f"/checkpoints/{ckpt['id']}/download")
    assert data.headers["etag"].strip('"') == ckpt["sha256"]
    path = tmp_path / "best.safetensors"
    path.write_bytes(data.content)
    model = load_trained_model(path, expected_sha256=ckpt["sha256"])
    accuracy = evaluate_accuracy(model, load_dataset(DatasetConfig(**DIGITS)), device="cpu")
    assert accuracy == pytest.approx(ckpt["metrics"]["test_acc"], abs=1e-9)
    assert_ray_cpus_released()


def test_cancel_mid_sweep_ends_every_trial_and_frees_ray(service, local_ray):
    client, settings = service
    body = {"base": {**BASE, "epochs": 40}, "space": PAPER, "num_samples": 4}
    sweep = client.post("/sweeps", json=body).json()
    runner = threading.Thread(target=serve, args=(settings,), kwargs={"exit_when_idle": True})
    runner.start()
    wait_until(  # the first trial really trains (a claim, Tune and its trial actor starting)
        lambda: client.get(f"/sweeps/{sweep['id']}").json()["trials"][0]["metrics"],
        timeout=START_S,
        interval=0.2,
        progress=lambda: client.get(f"/sweeps/{sweep['id']}").json()["state"],
        message="the first trial's first epoch",
    )
    assert client.post(f"/sweeps/{sweep['id']}/cancel").json()["state"] == "cancelling"
    runner.join(timeout=START_S)  # Tune stopping the trials, the worker noticing it is idle
    assert not runner.is_alive()
    view = client.get(f"/sweeps/{sweep['id']}").json()
    assert view["state"] == "cancelled"
    assert view["trial_counts"] == {"cancelled": 4}
    assert view["trials"][0]["current_epoch"] < 40
    assert_ray_cpus_released()


def _new_peers(before: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    return {k: v for k, v in ray_actors("DdpPeer").items() if k not in before}


def test_multi_worker_trials_run_on_one_warm_ddp_group(service, local_ray):
    """Two trials of two ranks each: the second trial runs on the peer the first started
    (one DdpPeer in all: no trainer, no process group started per trial)."""
    client, settings = service
    body = {
        "base": {**BASE, "epochs": 1, "resources": {"num_workers": 2}},
        "search": "grid",
        "space": {"tau.tau_s": {"kind": "grid", "values": [0.88, 0.9]}},
        "scheduler": {"kind": "none"},
    }
    before = ray_actors("DdpPeer")  # the Ray instance is the module's: earlier tests' peers
    sweep = client.post("/sweeps", json=body).json()
    serve(settings, exit_when_idle=True)
    view = client.get(f"/sweeps/{sweep['id']}").json()
    assert view["state"] == "succeeded", (view["error"], [t["error"] for t in view["trials"]])
    assert [t["state"] for t in view["trials"]] == ["succeeded", "succeeded"]
    assert all(len(t["metrics"]) == 1 for t in view["trials"])
    peers = _new_peers(before)
    assert len(peers) == 1, peers
    assert_ray_cpus_released()


def test_a_lost_peer_fails_its_trial_and_the_next_trial_starts_a_fresh_group(service, local_ray):
    client, settings = service
    body = {
        "base": {**BASE, "epochs": 6, "resources": {"num_workers": 2}},
        "search": "grid",
        "space": {"tau.tau_s": {"kind": "grid", "values": [0.88, 0.9]}},
        "scheduler": {"kind": "none"},
    }
    before = ray_actors("DdpPeer")
    sweep = client.post("/sweeps", json=body).json()
    runner = threading.Thread(target=serve, args=(settings,), kwargs={"exit_when_idle": True})
    runner.start()
    try:
        wait_until(  # the first trial trains on its group
            lambda: client.get(f"/sweeps/{sweep['id']}").json()["trials"][0]["metrics"],
            timeout=START_S,
            interval=0.2,
            progress=lambda: client.get(f"/sweeps/{sweep['id']}").json()["state"],
            message="the first trial's first epoch",
        )
        ((pid, _state),) = _new_peers(before).values()
        os.kill(pid, signal.SIGKILL)
    finally:
        runner.join(timeout=START_S * 2)  # trial 1 runs its 6 epochs on a fresh group
    assert not runner.is_alive()
    view = client.get(f"/sweeps/{sweep['id']}").json()
    first, second = view["trials"]
    assert first["state"] == "failed", first
    assert first["current_epoch"] < 6
    assert "RayActorError" in first["error"] or "died" in first["error"], first["error"]
    assert (second["state"], second["current_epoch"]) == ("succeeded", 6), second
    assert [m["epoch"] for m in second["metrics"]] == list(range(1, 7))
    peers = _new_peers(before)
    assert len(peers) == 2, peers
    assert {state for _pid, state in peers.values()} == {"DEAD"}, peers
    assert_ray_cpus_released()


def test_a_reclaimed_sweep_runs_only_its_unfinished_trials(service, sqlite_database, local_ray):
    """A worker died mid-sweep: trial 0 had finished, trial 1 was running. The sweep is
    requeued by the reaper; the next worker re-runs neither, finishing 1 and running 2."""
    from datetime import timedelta

    from recu_db import queue
    from recu_db.states import JobState
    from recu_db.trials import start_trial

    client, settings = service
    body = {
        "base": {**BASE, "epochs": 2},
        "space": PAPER,
        "num_samples": 3,
        "scheduler": {"kind": "none"},
    }
    sweep = client.post("/sweeps", json=body).json()
    db = sqlite_database.db  # the service's database
    dead = queue.claim(db, "dead-worker", lease_s=30)
    finished = start_trial(db, dead, "0")
    queue.record_epoch(db, finished, 1, {"test_acc": 0.5, "epoch": 1})
    queue.record_epoch(db, finished, 2, {"test_acc": 0.6, "epoch": 2})
    queue.finish(db, finished, JobState.SUCCEEDED)
    interrupted = start_trial(db, dead, "1")
    queue.record_epoch(db, interrupted, 1, {"test_acc": 0.1, "epoch": 1})
    assert queue.reap(db, now=queue.utcnow() + timedelta(minutes=5)) == [(sweep["id"], "queued")]

    serve(settings, exit_when_idle=True)

    view = client.get(f"/sweeps/{sweep['id']}").json()
    assert view["state"] == "succeeded", (view["error"], [t["error"] for t in view["trials"]])
    assert view["attempt"] == 2
    first, second, third = view["trials"]
    assert (first["state"], first["attempt"]) == ("succeeded", 1)  # not re-run
    assert [m["test_acc"] for m in first["metrics"]] == [0.5, 0.6]
    assert (second["state"], second["attempt"]) == ("succeeded", 2)  # taken over
    assert [m["epoch"] for m in second["metrics"]] == [1, 2]
    assert (third["state"], third["attempt"]) == ("succeeded", 1)


def test_failing_trials_are_recorded_with_their_error_and_the_sweep_goes_on(service, local_ray):
    """Both trials fail (their dataset folder has no classes: it passes the API's check that
    the root exists, and the loader refuses it): the second still runs after the first
    failed, each records its error and traceback, and the sweep fails saying so."""
    client, settings = service
    data_dir = DataSettings().data_dir  # what the API and the workers read (RECU_DATA_DIR)
    name = f"e2e-no-classes-{uuid.uuid4().hex[:8]}"
    for split in ("train", "test"):
        (data_dir / name / split).mkdir(parents=True)
    try:
        folder = {"name": "imagefolder", "root": name}
        body = {"base": {**BASE, "dataset": folder}, "space": PAPER, "num_samples": 2}
        sweep = client.post("/sweeps", json=body).json()
        serve(settings, exit_when_idle=True)
    finally:
        shutil.rmtree(data_dir / name)
    view = client.get(f"/sweeps/{sweep['id']}").json()
    assert view["state"] == "failed"
    assert "every one of the 2 trials failed" in view["error"]
    for trial in view["trials"]:
        assert trial["state"] == "failed"
        assert name in trial["error"]
        logs = client.get(f"/jobs/{trial['id']}/logs").json()
        assert logs[0]["line"].startswith("Traceback")
    assert_ray_cpus_released()
