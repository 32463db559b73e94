"""The queue alone: claim + finish throughput with concurrent claimers, no training, no
API. Prints figures; never a pass/fail test.

    .venv/bin/python -m bench.queue_throughput [--jobs 4000] [--claimers 8] [--users 8]

Per database (a SQLite file; a fresh schema of the local PostgreSQL, skipped with the
reason when none answers) and per claim policy (fair share on, the default; and
priority-then-age, the order before fair share), ``--jobs`` jobs of ``--users`` users
are queued first; then ``--claimers`` processes, started together, each loop
``queue.claim`` (with ``free`` resources given, as a worker does) and ``queue.finish``
(succeeded) until the queue is empty. Reported: jobs per second over the wall time from
the start signal to the last finish, and the p50 / p99 latency of claim and of finish.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from typing import Any

from sqlalchemy import text

from bench.common import environment
from bench.stats import quantile_ms as _ms
from recu_core.jobspec import JobSpec
from recu_db import queue
from recu_db.engine import make_sessionmaker
from recu_db.fairshare import FIFO, ClaimPolicy
from recu_db.migrate import migrated_engine
from recu_db.scratch import scratch_schema
from recu_db.states import JobState
from recu_db.tokens import ensure_user

POSTGRES_URL = os.environ.get(
    "RECU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SPEC = JobSpec.model_validate({"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 1})
POLICIES = {"fair share (default)": ClaimPolicy(), "priority, age": FIFO}


def _claimer(url: str, name: str, policy: ClaimPolicy, go: Any, out: Any) -> None:
    """Claim and finish until the queue is empty; send (claim latencies, finish latencies,
    end time)."""
    engine = migrated_engine(url, pool_size=1, max_overflow=0)
    db = make_sessionmaker(engine)
    claims, finishes = [], []
    go.wait()
    while True:
        t0 = time.perf_counter()
        lease = queue.claim(db, name, lease_s=60, free=(1e6, 1e6), policy=policy)
        t1 = time.perf_counter()
        if lease is None:
            break
        claims.append(t1 - t0)
        queue.finish(db, lease, JobState.SUCCEEDED, policy=policy)
        finishes.append(time.perf_counter() - t1)
    out.put((claims, finishes, time.time()))
    engine.dispose()


def _fill(url: str, jobs: int, users: int) -> None:
    engine = migrated_engine(url)
    db = make_sessionmaker(engine)
    owners = [ensure_user(db, f"user-{u}").user_id for u in range(users)]
    for i in range(jobs):
        queue.submit(db, SPEC, user_id=owners[i % users], priority=i % 3)
    if engine.dialect.name == "postgresql":  # the planner's statistics, as autovacuum keeps
        with engine.begin() as connection:  # them on a live database (a fresh table has none)
            connection.execute(text("ANALYZE jobs"))
    engine.dispose()


def measure(url: str, args: argparse.Namespace, policy: ClaimPolicy) -> str:
    _fill(url, args.jobs, args.users)
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_claimer, args=(url, f"claimer-{i}", policy, go, out))
        for i in range(args.claimers)
    ]
    for p in procs:
        p.start()
    time.sleep(3.0)  # every claimer connected and migrated-checked before the signal
    start = time.time()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    claims = [c for r in results for c in r[0]]
    finishes = [f for r in results for f in r[1]]
    wall = max(r[2] for r in results) - start
    return (
        f"{len(claims)} | {len(claims) / wall:.0f} | {_ms(claims, 0.5):.1f} | "
        f"{_ms(claims, 0.99):.1f} | {_ms(finishes, 0.5):.1f} | {_ms(finishes, 0.99):.1f} | "
        f"{statistics.mean(len(r[0]) for r in results):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--claimers", type=int, default=8)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--databases", default="SQLite,PostgreSQL")
    args = parser.parse_args()
    print(f"# {args.jobs} jobs of {args.users} users, {args.claimers} claimer processes")
    print(f"# {environment()}")
    print(
        "| database | claim order | jobs | jobs/s | claim p50 ms | claim p99 ms | "
        "finish p50 ms | finish p99 ms | jobs per claimer |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    wanted = {name.strip().lower() for name in args.databases.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        for name, policy in POLICIES.items():
            tag = "fair" if policy.fair_share else "fifo"
            if "sqlite" in wanted:
                row = measure(f"sqlite:///{tmp}/{tag}.db", args, policy)
                print(f"| SQLite | {name} | {row} |", flush=True)
            if "postgresql" in wanted:
                with ExitStack() as stack:
                    try:
                        url = stack.enter_context(scratch_schema(POSTGRES_URL, "queue"))
                    except Exception as err:  # no server: say so, go on
                        print(f"PostgreSQL skipped: {type(err).__name__}: {err}")
                        continue
                    print(f"| PostgreSQL | {name} | {measure(url, args, policy)} |", flush=True)


if __name__ == "__main__":
    main()
