"""A simulated 256-GPU cluster on the real queue (PostgreSQL): fair share across users and
wide-job protection, before (priority, then age, smaller jobs backfill) and after (fair
share by decayed usage + reservations). Prints figures; never a pass/fail test.

    .venv/bin/python -m bench.cluster_sim [--jobs 10000] [--users 50] [--workers 8]

The cluster is ``--workers`` queue workers (processes) of 32 GPUs and 128 CPUs each (four
8-GPU nodes), 256 GPUs in all. A worker claims with what its cluster has free (the real
``queue.claim``, with ``free``, ``largest_node`` and ``total`` as a worker passes them),
holds each job for its duration, heartbeats it every 3 s, finishes it
(``queue.finish``), and reaps expired leases once a second: everything a worker does
but train. A job of width w (1, 2, 4 or 8 GPUs: 40/25/20/15%) is w Ray Train workers of
1 GPU and 1 CPU; a worker's GPUs count as one pool (Ray Train spreads the workers over
its nodes). Durations are log-uniform in [0.3, 6] s. Users submit in Zipf proportions
(user k: 1/(k+1)), so a few users could fill the cluster alone. A submitter process
queues the jobs as a Poisson stream at 1.05x the cluster's capacity (after a backlog of
``--backlog`` jobs at the start), so the queue never empties until the stream ends.

Time runs ~100x faster than on a real cluster (a job of minutes lasts seconds), and the
policy's clocks are scaled alike: a usage half-life of 60 s, aging after 60 s and a
reservation of the queue's head after 10 s of waiting (in production the defaults are
7 days, 1 day and 600 s).

Reported per run: claim latency (p50 / p99 of every claim call, and of those that took
a job), GPU utilisation while jobs were waiting, each user's GPU-seconds while the
stream ran against its max-min fair share of what was delivered (the water-filling
share: a user asking for less than an equal part gets all it asked), and the waits of
the wide (8-GPU) and the narrow jobs.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from bench.common import environment
from bench.stats import quantile_ms as _ms
from recu_core.jobspec import JobSpec, Resources
from recu_db import queue
from recu_db.engine import make_sessionmaker
from recu_db.fairshare import FIFO, ClaimPolicy
from recu_db.migrate import migrated_engine
from recu_db.models import Job
from recu_db.scratch import scratch_schema
from recu_db.states import TERMINAL, JobState
from recu_db.tokens import ensure_user

POSTGRES_URL = os.environ.get(
    "RECU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
GPUS_PER_WORKER, CPUS_PER_WORKER, NODE = 32.0, 128.0, (32.0, 8.0)
WIDTHS = [(1, 0.40), (2, 0.25), (4, 0.20), (8, 0.15)]
LEASE_S, BEAT_S = 30.0, 3.0
POLICIES = {
    "before: priority, age, backfill": FIFO,
    "after: fair share + aging + reservations": ClaimPolicy(
        half_life_s=60.0, age_s=60.0, reserve_after_s=10.0, reservation_s=10.0
    ),
}


@dataclass(frozen=True)
class Planned:
    at_s: float  # submission time from the start
    user: int
    width: int
    duration_s: float


def plan(jobs: int, users: int, workers: int, backlog: int, seed: int) -> list[Planned]:
    """The submission stream: Zipf users, the widths above, log-uniform durations, Poisson
    arrivals at 1.05x capacity after ``backlog`` jobs at time 0."""
    rng = random.Random(seed)
    weights = [1 / (k + 1) for k in range(users)]
    widths, probs = zip(*WIDTHS, strict=True)
    mean_work = sum(w * p for w, p in WIDTHS) * (6 - 0.3) / math.log(6 / 0.3)
    rate = 1.05 * workers * GPUS_PER_WORKER / mean_work  # jobs per second
    at, out = 0.0, []
    for i in range(jobs):
        if i >= backlog:
            at += rng.expovariate(rate)
        duration = math.exp(rng.uniform(math.log(0.3), math.log(6.0)))
        user = rng.choices(range(users), weights)[0]
        out.append(Planned(at, user, rng.choices(widths, probs)[0], duration))
    return out


def _spec(job: Planned) -> JobSpec:
    # the duration rides in the spec (epochs = deciseconds): the workers read it back
    resources = Resources(num_workers=job.width, use_gpu=True, gpus_per_worker=1)
    return JobSpec(epochs=max(1, round(job.duration_s * 10)), resources=resources)


def _submitter(url: str, jobs: list[Planned], owners: list[int], t0: float) -> None:
    db = make_sessionmaker(migrated_engine(url, pool_size=1, max_overflow=0))
    for job in jobs:
        delay = t0 + job.at_s - time.time()
        if delay > 0:
            time.sleep(delay)
        queue.submit(db, _spec(job), user_id=owners[job.user], max_attempts=1)


def _worker(url: str, name: str, policy: ClaimPolicy, stop: Any, out: Any) -> None:
    """A queue worker of a simulated 32-GPU cluster: claim, hold, heartbeat, finish."""
    db = make_sessionmaker(migrated_engine(url, pool_size=1, max_overflow=0))
    held: dict[int, tuple[queue.Lease, float, float]] = {}  # job -> (lease, end, last beat)
    claims: list[tuple[float, bool]] = []
    runs: list[tuple[int, float, float, int]] = []  # (job, start, end, gpus)
    next_reap = 0.0
    while not stop.is_set():
        now = time.time()
        for job_id, (lease, end, _) in list(held.items()):
            if end <= now:
                queue.finish(db, lease, JobState.SUCCEEDED, policy=policy)
                runs.append((job_id, end - lease.job.epochs / 10, time.time(), int(lease.gpus)))
                del held[job_id]
            elif now - held[job_id][2] >= BEAT_S:
                queue.heartbeat(db, lease, lease_s=LEASE_S)
                held[job_id] = (lease, end, now)
        if now >= next_reap:
            queue.reap(db, policy=policy)
            next_reap = now + 1.0
        gpus = GPUS_PER_WORKER - sum(lease.gpus for lease, _, _ in held.values())
        cpus = CPUS_PER_WORKER - sum(lease.cpus for lease, _, _ in held.values())
        lease = None
        if gpus >= 1:
            begin = time.perf_counter()
            lease = queue.claim(
                db,
                name,
                lease_s=LEASE_S,
                free=(cpus, gpus),
                largest_node=NODE,
                total=(CPUS_PER_WORKER, GPUS_PER_WORKER),
                policy=policy,
            )
            claims.append((time.perf_counter() - begin, lease is not None))
        if lease is not None:
            start = time.time()
            held[lease.job_id] = (lease, start + lease.job.epochs / 10, start)
            continue
        ends = [end for _, end, _ in held.values()]
        time.sleep(max(0.0, min([*ends, now + 0.05]) - time.time()))
    out.put((claims, runs))


def _water_fill(demand: dict[int, float], capacity: float) -> dict[int, float]:
    """Max-min fair shares of ``capacity`` for the demands (equal parts, a user asking
    for less gets what it asked and the rest is shared again)."""
    share, left, open_users = {}, capacity, dict(demand)
    while open_users:
        part = left / len(open_users)
        small = {u: d for u, d in open_users.items() if d <= part}
        if not small:
            share.update(dict.fromkeys(open_users, part))
            break
        for u, d in small.items():
            share[u] = d
            left -= d
            del open_users[u]
    return share


def run(url: str, jobs: list[Planned], args: argparse.Namespace, policy: ClaimPolicy) -> str:
    db = make_sessionmaker(migrated_engine(url))
    owners = [ensure_user(db, f"sim-user-{u}").user_id for u in range(args.users)]
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(url, f"sim-worker-{i}", policy, stop, out))
        for i in range(args.workers)
    ]
    for w in workers:
        w.start()
    t0 = time.time() + 3.0  # the workers connect meanwhile
    submitter = ctx.Process(target=_submitter, args=(url, jobs, owners, t0))
    submitter.start()
    submitter.join()
    stream_end = time.time()
    while _unfinished(db) > 0:  # wait until every job has run
        time.sleep(0.5)
    stop.set()
    results = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join()
    claims = [c for r in results for c in r[0]]
    runs = [r for res in results for r in res[1]]
    by_id = _submitted(db, owners)
    # utilisation while the stream ran (jobs were waiting all along)
    window = stream_end - t0
    busy = sum(g * max(0.0, min(e, stream_end) - max(s, t0)) for _, s, e, g in runs)
    utilisation = busy / (args.workers * GPUS_PER_WORKER * window)
    # each user's GPU-seconds in the window against the max-min fair share of them
    got: dict[int, float] = defaultdict(float)
    for job_id, s, e, g in runs:
        got[by_id[job_id][0]] += g * max(0.0, min(e, stream_end) - max(s, t0))
    demand: dict[int, float] = defaultdict(float)
    for job in jobs:
        if job.at_s <= window:
            demand[owners[job.user]] += job.width * job.duration_s
    fair = _water_fill(dict(demand), sum(got.values()))
    ratios = [got[u] / fair[u] for u in fair if fair[u] > 0]
    jain = sum(ratios) ** 2 / (len(ratios) * sum(r * r for r in ratios))
    heavy = sorted(fair, key=lambda u: -demand[u])[:3]
    shares = ", ".join(f"{got[u] / fair[u]:.2f}" for u in heavy)
    waits: dict[int, list[float]] = defaultdict(list)
    for job_id, s, _, g in runs:
        waits[g].append(s - by_id[job_id][1])
    wide, narrow = waits.get(8, []), waits.get(1, [])
    return (
        f"{_ms([c for c, _ in claims], 0.5):.1f} / {_ms([c for c, _ in claims], 0.99):.1f} | "
        f"{_ms([c for c, ok in claims if ok], 0.5):.1f} / "
        f"{_ms([c for c, ok in claims if ok], 0.99):.1f} | {100 * utilisation:.1f}% | "
        f"{jain:.3f} | {min(ratios):.2f}-{max(ratios):.2f} | {shares} | "
        f"{statistics.median(wide):.1f} / {max(wide):.1f} | "
        f"{statistics.median(narrow):.1f} / {max(narrow):.1f} | {len(runs)}"
    )


def _unfinished(db: queue.Db) -> int:
    with db() as session:
        return (
            session.scalar(select(func.count()).select_from(Job).where(Job.state.not_in(TERMINAL)))
            or 0
        )


def _submitted(db: queue.Db, owners: list[int]) -> dict[int, tuple[int, float]]:
    """job id -> (owner, submitted at, Unix seconds)."""
    with db() as session:
        rows = session.execute(select(Job.id, Job.user_id, Job.created_at))
        return {job_id: (user_id, created.timestamp()) for job_id, user_id, created in rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8, help="Of 32 GPUs each.")
    parser.add_argument("--backlog", type=int, default=1000, help="Jobs queued at the start.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--policies", default="before,after", help="Comma-separated: before, after."
    )
    args = parser.parse_args()
    jobs = plan(args.jobs, args.users, args.workers, args.backlog, args.seed)
    print(
        f"# {args.jobs} jobs of {args.users} users over {jobs[-1].at_s:.0f} s, "
        f"{args.workers} workers x {GPUS_PER_WORKER:.0f} GPUs = "
        f"{args.workers * GPUS_PER_WORKER:.0f} GPUs; PostgreSQL"
    )
    print(f"# {environment()}")
    print(
        "| claim order | claim p50 / p99 ms (all) | (taking a job) | GPU utilisation | "
        "Jain index of got/fair | got/fair range | 3 heaviest users got/fair | "
        "8-GPU wait p50 / max s | 1-GPU wait p50 / max s | jobs run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, policy in POLICIES.items():
        if name.split(":")[0] not in args.policies.split(","):
            continue
        with scratch_schema(POSTGRES_URL, "sim") as url:
            print(f"| {name} | {run(url, jobs, args, policy)} |", flush=True)


if __name__ == "__main__":
    main()
