"""A tau sweep through the service, its best pair against the paper's default, and the
per-trial overhead.

Starts the API and one queue worker (local Ray, SQLite), POSTs a sweep over the paper's
advice (tau_s in [0.85, 0.94], tau_e in [0.96, 0.999]; random search, ASHA) on ``digits``,
then trains the best pair and the paper's default (0.85, 0.99) as ordinary jobs with other
seeds than the sweep's (the sweep picked its best on the test split, so re-using its seed
would flatter it), same epochs. Per-trial overhead = a trial's wall time (its running
event to its end event) minus its own epoch times.

    .venv/bin/python -m bench.sweep_tau [--trials 8] [--epochs 15] [--seeds 1 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import environment
from recu_cli.local_service import local_service

CORES = os.cpu_count() or 1


def _base(epochs: int, seed: int = 0, workers: int = 1) -> dict[str, Any]:
    return {
        "model": "resnet20",
        "dataset": {"name": "digits"},
        "epochs": epochs,
        "batch_size": 32,
        "seed": seed,
        "optimizer": {"lr": 0.1},
        "resources": {"num_workers": workers, "cpus_per_worker": max(1, CORES // workers)},
        "checkpoint": {"every_epochs": epochs, "keep": 1},
    }


def _wait(client: httpx.Client, path: str) -> dict[str, Any]:
    while True:
        view = client.get(path, params={"max_points": 100_000}).raise_for_status().json()
        if view["terminal"]:
            return view
        time.sleep(1)


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _span(client: httpx.Client, trial: dict[str, Any]) -> tuple[str, str]:
    """When the trial started running and when it ended (its events)."""
    events = client.get(f"/jobs/{trial['id']}/events").raise_for_status().json()
    started = next(e["at"] for e in events if e["to_state"] == "running")
    return started, events[-1]["at"]


def _train(client: httpx.Client, epochs: int, seed: int, tau: tuple[float, float]) -> float:
    body = _base(epochs, seed) | {"tau": {"tau_s": tau[0], "tau_e": tau[1]}}
    job = client.post("/jobs", json=body).raise_for_status().json()
    done = _wait(client, f"/jobs/{job['id']}")
    if done["state"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {done['state']}: {done['error']}")
    return float(done["latest_metrics"]["test_acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="DDP workers per trial (>1: a warm DDP group, workers/peer_group.py).",
    )
    parser.add_argument(
        "--scheduler", choices=["asha", "none"], default="asha", help="The sweep's scheduler."
    )
    parser.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Train the best pair and the paper's default on --seeds afterwards.",
    )
    args = parser.parse_args()
    print(
        f"# tau sweep on digits, ResNet-20, {args.epochs} epochs per trial, "
        f"{args.workers} worker(s) per trial; {environment()}"
    )
    sweep_body = {
        "base": _base(args.epochs, workers=args.workers),
        "space": {
            "tau.tau_s": {"kind": "uniform", "low": 0.85, "high": 0.94},
            "tau.tau_e": {"kind": "uniform", "low": 0.96, "high": 0.999},
        },
        "num_samples": args.trials,
        "scheduler": {"kind": args.scheduler, "grace_period": 3, "reduction_factor": 2},
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        local_service(Path(tmp)) as service,
        service.client(timeout=60) as client,
    ):
        started = time.perf_counter()
        sweep = client.post("/sweeps", json=sweep_body).raise_for_status().json()
        view = _wait(client, f"/sweeps/{sweep['id']}")
        wall = time.perf_counter() - started
        print(f"sweep {view['state']} in {wall:.0f} s: {view['trial_counts']}")
        print("| trial | tau_s | tau_e | state | epochs | final test acc | outside epochs s |")
        print("|---|---|---|---|---|---|---|")
        spans, inside, compute = [], [], 0.0
        for t in view["trials"]:
            spans.append(_span(client, t))
            own = sum(m["epoch_time_s"] for m in t["metrics"])
            compute += own
            inside.append(_seconds(*spans[-1]) - own)
            print(
                f"| {t['index']} | {t['params']['tau.tau_s']:.4f} | "
                f"{t['params']['tau.tau_e']:.4f} | {t['state']} | {t['current_epoch']} | "
                f"{t['metrics'][-1]['test_acc']:.4f} | {inside[-1]:.1f} |"
            )
        spans.sort()
        gaps = [_seconds(a[1], b[0]) for a, b in itertools.pairwise(spans)]
        n = len(view["trials"])
        print(
            f"per-trial overhead: {(wall - compute) / n:.1f} s "
            f"((sweep wall {wall:.0f} s - own epoch time {compute:.0f} s) / {n} trials); "
            f"between trials median {statistics.median(gaps):.1f} s, "
            f"inside a trial outside its epochs median {statistics.median(inside):.1f} s"
        )
        print(f"sweep wall time / the trials' own training time: {wall / compute:.3f}")
        if not args.compare:
            return
        best = view["best"]["params"]
        pair = (best["tau.tau_s"], best["tau.tau_e"])
        print(f"best pair: tau_s {pair[0]:.4f}, tau_e {pair[1]:.4f}")
        rows = {"sweep's best": pair, "paper default": (0.85, 0.99)}
        print(f"| pair | tau_s | tau_e | test acc, seeds {args.seeds} | mean |")
        print("|---|---|---|---|---|")
        for name, tau in rows.items():
            accs = [_train(client, args.epochs, seed, tau) for seed in args.seeds]
            print(
                f"| {name} | {tau[0]:.4f} | {tau[1]:.4f} | "
                f"{', '.join(f'{a:.4f}' for a in accs)} | {statistics.mean(accs):.4f} |"
            )


if __name__ == "__main__":
    main()
