"""What the dashboard's requests cost on a long history: a job with ``--epochs`` epochs of
metrics and of ResNet-20-sized telemetry (18 binary layers, 48-bin histograms) on a
SQLite file, read through the real app (in-process ASGI client) with and without the
server-side downsampling the pages ask for. Prints bytes and median wall time per request;
never a pass/fail test.

    .venv/bin/python -m bench.dashboard_payload [--epochs 600] [--rounds 7]

The requests are timed interleaved, round by round, so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from bench.common import environment
from recu_db import queue, results
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.migrate import upgrade
from recu_db.tokens import create_token
from service.app import create_app
from service.config import ServiceSettings

LAYERS = 18
BINS = 48


def _telemetry(rng: random.Random) -> dict:
    layers = {
        f"blocks.{i // 2}.conv{i % 2 + 1}": {
            "flip_rate": rng.random(),
            "beyond_clamp": rng.random(),
            "q": rng.random(),
            "quant_error": rng.random(),
            "entropy_bits": rng.random() * 5,
            "alpha": {"mean": 1.0, "std": 0.1, "min": 0.5, "max": 1.5},
            "hist": [rng.randrange(5000) for _ in range(BINS)],
        }
        for i in range(LAYERS)
    }
    return {"hist_range": [-6.0, 6.0], "hist_bins": BINS, "layers": layers}


def _seed(db: queue.Db, client: TestClient, epochs: int) -> int:
    job_id = client.post("/jobs", json={"epochs": epochs}).json()["id"]
    lease = queue.claim(db, "bench", lease_s=3600)
    rng = random.Random(0)
    for epoch in range(1, epochs + 1):
        metrics = {k: rng.random() for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
        queue.record_epoch(db, lease, epoch, {**metrics, "tau": 0.9, "lr": 0.1})
        results.record_telemetry(db, lease, epoch, _telemetry(rng))
    return job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        upgrade(engine)
        db = make_sessionmaker(engine)
        with TestClient(create_app(ServiceSettings(database_url=url))) as client:
            token = create_token(make_sessionmaker(engine), "bench")
            client.headers["Authorization"] = f"Bearer {token}"
            job = _seed(db, client, args.epochs)
            layer = "blocks.0.conv1"
            requests = {
                "metrics, every epoch": f"/jobs/{job}/metrics",
                "metrics, max_points=500 (job page)": f"/jobs/{job}/metrics?max_points=500",
                "telemetry, every epoch": f"/jobs/{job}/telemetry",
                "telemetry, max_points=200": f"/jobs/{job}/telemetry?max_points=200",
                "telemetry, max_points=200&hist=false (layer chart)": (
                    f"/jobs/{job}/telemetry?max_points=200&hist=false"
                ),
                "telemetry, max_points=200&layer=1 layer (histogram)": (
                    f"/jobs/{job}/telemetry?max_points=200&layer={layer}"
                ),
            }
            times: dict[str, list[float]] = {name: [] for name in requests}
            sizes: dict[str, int] = {}
            for _ in range(args.rounds):
                for name, path in requests.items():
                    started = time.perf_counter()
                    response = client.get(path)
                    times[name].append(time.perf_counter() - started)
                    response.raise_for_status()
                    sizes[name] = len(response.content)
        engine.dispose()
    print(environment())
    print(f"one job, {args.epochs} epochs, {LAYERS} layers x {BINS} bins, SQLite")
    print(f"{'request':<55} {'bytes':>11} {'median ms':>10}")
    for name in requests:
        print(f"{name:<55} {sizes[name]:>11,} {1000 * statistics.median(times[name]):>10.1f}")


if __name__ == "__main__":
    main()
