"""Service overhead: a job through the REST API, the queue and Ray Train, against the same
training with ``recu train`` in one process.

Both run the same recipe (ReCU ResNet-20 on digits, one worker with all the machine's
cores, a checkpoint every epoch) for a 1-epoch job and a longer one. The service is timed
from POST /jobs to the job observed succeeded (GET polled every 0.25 s) with a warm worker
(a warm-up job ran first); ``recu train`` is timed as the command a user runs, from process
start to exit, after a warm-up run of its own. Fixed cost = service wall - one-process wall
on the 1-epoch job; ratio = service wall / one-process wall on the long job.

    .venv/bin/python -m bench.service_overhead [--epochs 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.common import environment
from recu_cli.local_service import local_service

RECIPE = {"model": "resnet20", "dataset": {"name": "digits"}, "batch_size": 32, "seed": 0}


def _job(epochs: int, threads: int) -> dict[str, object]:
    return {
        **RECIPE,
        "epochs": epochs,
        "optimizer": {"lr": 0.1},
        "resources": {"num_workers": 1, "cpus_per_worker": threads},
        "checkpoint": {"every_epochs": 1, "keep": 1},
    }


def one_process(epochs: int, threads: int, workdir: Path) -> float:
    """Wall seconds of ``recu train`` with the same recipe, process start to exit."""
    command = [
        str(Path(sys.executable).with_name("recu")),
        "train",
        *("--model", "resnet20", "--dataset", "digits", "--batch-size", "32", "--lr", "0.1"),
        *("--epochs", str(epochs), "--seed", "0", "-o", str(workdir / f"local-{epochs}.st")),
    ]
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch's intra-op threads
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def _first_epoch_start_s(client: httpx.Client, job_id: int, history: list[dict]) -> float:
    """Seconds from the job's claim (its ``running`` event) to its first epoch's start
    (the first epoch's record time less its own epoch time): the warm-worker start."""
    events = client.get(f"/jobs/{job_id}/events").raise_for_status().json()
    claimed = next(e["at"] for e in events if e["to_state"] == "running")
    first = history[0]
    recorded = datetime.fromisoformat(first["recorded_at"])
    started = recorded.timestamp() - first["metrics"]["epoch_time_s"]
    return started - datetime.fromisoformat(claimed).timestamp()


def through_service(client: httpx.Client, epochs: int, threads: int) -> tuple[float, float, float]:
    """(wall seconds from POST to succeeded, sum of the job's own epoch times, seconds
    from the claim to the first epoch's start)."""
    start = time.perf_counter()
    job = client.post("/jobs", json=_job(epochs, threads)).raise_for_status().json()
    while not job["terminal"]:
        time.sleep(0.25)  # faster polling costs the API CPU the training would miss
        job = client.get(f"/jobs/{job['id']}").raise_for_status().json()
    wall = time.perf_counter() - start
    if job["state"] != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {job['state']}: {job['error']}")
    history = client.get(f"/jobs/{job['id']}/metrics").raise_for_status().json()
    start = _first_epoch_start_s(client, job["id"], history)
    return wall, sum(m["metrics"]["epoch_time_s"] for m in history), start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=100, help="Epochs of the long job.")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads on both sides (the job's cpus_per_worker); default: all cores.",
    )
    parser.add_argument(
        "--beside-idle",
        action="store_true",
        help="Also run the long `recu train` while the service (API, worker, Ray, an idle "
        "warm rank) is up and idle: what the service's mere presence costs the training.",
    )
    args = parser.parse_args()
    t = args.threads
    print(f"# ReCU ResNet-20 on digits, batch 32, {t} torch threads (1 worker x {t} CPUs)")
    print(f"# {environment()}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        one_process(1, t, workdir)  # warms the dataset and compile caches: not counted
        local = {e: one_process(e, t, workdir) for e in (1, args.epochs)}
        with (
            local_service(workdir / "service") as service,
            service.client() as client,
        ):
            cold, _, _ = through_service(client, 1, t)  # starts Ray in the worker: not counted
            service = {e: through_service(client, e, t) for e in (1, args.epochs)}
            beside = one_process(args.epochs, t, workdir) if args.beside_idle else None
    print(f"first job on a cold worker (Ray start-up included): {cold:.1f} s")
    print(
        "| epochs | recu train (one process) s | service (API + queue + Ray) s | "
        "job's own epoch time s | service / one process |"
    )
    print("|---|---|---|---|---|")
    for e in (1, args.epochs):
        wall, trained, _ = service[e]
        print(f"| {e} | {local[e]:.1f} | {wall:.1f} | {trained:.1f} | {wall / local[e]:.3f} |")
    print(f"fixed start-up cost (warm worker, 1-epoch job): {service[1][0] - local[1]:.1f} s")
    starts = ", ".join(f"{service[e][2]:.2f} s ({e}-epoch job)" for e in (1, args.epochs))
    print(f"warm worker, claim to first epoch's start: {starts}")
    print(f"ratio at {args.epochs} epochs: {service[args.epochs][0] / local[args.epochs]:.3f}")
    if beside is not None:
        print(
            f"`recu train` ({args.epochs} epochs) beside the idle service: {beside:.1f} s, "
            f"{beside / local[args.epochs]:.3f}x its time alone"
        )


if __name__ == "__main__":
    main()
