"""A sweep's multi-worker trials on a warm DDP group instead of a TorchTrainer per trial.

A ``TorchTrainer`` costs about 11 s before any training on a 2-core machine
(``bench/trainer_start.py``: a controller actor, worker processes that import torch, a
gloo group, the teardown), paid again by every trial. Tune reuses a trial's actor for the
next trial (``reuse_actors``); here that actor is also rank 0 of a DDP group whose other
ranks are ``DdpPeer`` actors it starts once, in bundles 1..N-1 of the trial's placement
group, and keeps (state of the reused process) for the next trial of the same shape: the
process group, torch and the decoded data stay up, and each trial hands every rank its
lease.

How a trial ends decides what is kept. A trial that succeeds on every rank keeps the
group. Any other end (rank 0 stopped mid-epoch by a cancel or by the sweep's scheduler,
an error on a rank, a lost peer) can leave the other ranks blocked in a collective, so the
group is torn down (peers killed, process group destroyed) and the next trial builds a
fresh one. A peer that ends badly while rank 0 trains is seen by a watcher thread, which
kills the peers: rank 0's pending collective then fails at once (its connections close)
instead of waiting out the group's time-out, and the trial fails with the peer's error.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import ray
import torch.distributed as dist
from ray.actor import ActorHandle
from ray.exceptions import RayActorError
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from recu_db.queue import Lease
from workers.failures import DatabaseOutageError, is_collateral
from workers.train_loop import RankJob, run_training
from workers.trainer import TrainingCodeError
from workers.warm_rank import Ended, Outcome, Shape, run_rank, shape_of

log = logging.getLogger("recu.worker")

#: How long a rank waits in a collective (and the group's start) for the others: a
#: bound only a broken group reaches (a dead peer is noticed by the watcher at once).
GROUP_TIMEOUT_S = 600.0
#: How long rank 0, its collective broken, waits for Ray to report which peer died (its
#: error then names the peer, not the broken connection); seconds in practice.
PEER_LOSS_S = 60.0


def _join(address: str, rank: int, world: int, backend: str) -> None:
    dist.init_process_group(
        backend,
        init_method=f"tcp://{address}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=GROUP_TIMEOUT_S),
    )


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@ray.remote(max_restarts=0)  # a lost peer ends its group; the next trial starts a new one
class DdpPeer:
    """Rank 1..N-1 of a warm group: joins the process group once, then runs one trial's
    rank after another in this long-lived process."""

    def join(self, address: str, rank: int, world: int, backend: str) -> None:
        _join(address, rank, world, backend)

    def run(self, job: RankJob, rank: int) -> Ended:
        return run_rank(job, rank)


def _free_address() -> str:
    """This node's address and a port free now, for the group's rendezvous."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    return f"{ray.util.get_node_ip_address()}:{port}"


class PeerGroup:
    """Rank 0 (this process) and its started peers, for trials of one shape."""

    def __init__(self, key: tuple[int, Shape], peers: list[ActorHandle]) -> None:
        self.key = key
        self.peers = peers
        self.failure: BaseException | None = None  # a peer's bad end, seen by the watcher
        self.closed = False

    @classmethod
    def start(cls, lease: Lease) -> PeerGroup:
        """Peers in bundles 1..N-1 of this trial's placement group, joined with rank 0."""
        resources = lease.job.resources
        world = resources.num_workers
        extra = dict(resources.per_worker)
        cpus, gpus = extra.pop("CPU", 1.0), extra.pop("GPU", 0.0)
        group = get_current_placement_group()
        peers = [
            DdpPeer.options(  # type: ignore[attr-defined]  # ray.remote makes it an ActorClass
                num_cpus=cpus,
                num_gpus=gpus,
                resources=extra or None,
                scheduling_strategy=(
                    PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank)
                    if group is not None
                    else None
                ),
                runtime_env={"env_vars": {"OMP_NUM_THREADS": str(max(1, int(cpus)))}},
            ).remote()
            for rank in range(1, world)
        ]
        address, backend = _free_address(), "nccl" if gpus else "gloo"
        joined = [peer.join.remote(address, r, world, backend) for r, peer in enumerate(peers, 1)]
        try:
            _join(address, 0, world, backend)
            ray.get(joined)
        except BaseException:
            for peer in peers:
                ray.kill(peer)
            _leave()
            raise
        return cls((world, shape_of(lease)), peers)

    def watch(self, running: list[Any]) -> None:
        """Wait for the peers' runs; the first that ends badly is recorded and every peer
        killed (rank 0's collective fails instead of hanging)."""
        pending = list(running)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ended: Ended = ray.get(done[0])
            except RayActorError as err:
                failure: BaseException | None = err
            else:
                failure = _as_error(ended) if ended.outcome != Outcome.SUCCEEDED else None
            if failure is not None and not self.closed:
                self.failure = failure
                self._kill()  # rank 0 leaves the process group itself (close)
                return

    def _kill(self) -> None:
        for peer in self.peers:
            ray.kill(peer)  # a no-op for a dead one

    def close(self) -> None:
        """Kill the peers and leave the process group (rank 0's thread only)."""
        self.closed = True
        self._kill()
        _leave()


def _as_error(ended: Ended) -> BaseException:
    if ended.outcome == Outcome.OUTAGE:
        return DatabaseOutageError(ended.message)
    return TrainingCodeError(ended.message, ended.details)


_warm: PeerGroup | None = None  # this process's group, kept between trials


def run_on_peers(
    lease: Lease,
    *,
    database_url: str,
    lease_s: float,
    report: Callable[[dict[str, Any]], None],
) -> None:
    """Train the trial's rank 0 here and its other ranks on the warm peers (started now
    when this process has none of the trial's shape); returns when every rank succeeded.
    Raises what ``run_training`` raises on rank 0, or a peer's failure: its
    TrainingCodeError, DatabaseOutageError or RayActorError (a lost peer)."""
    global _warm
    key = (lease.job.resources.num_workers, shape_of(lease))
    if _warm is not None and _warm.key != key:
        _warm.close()
        _warm = None
    if _warm is None:
        _warm = PeerGroup.start(lease)
    group = _warm
    job = RankJob(lease=lease, database_url=database_url, lease_s=lease_s)
    running = [peer.run.remote(job, rank) for rank, peer in enumerate(group.peers, 1)]
    watcher = threading.Thread(target=group.watch, args=(running,), daemon=True)
    watcher.start()
    kept = False
    try:
        run_training(lease, database_url=database_url, lease_s=lease_s, rank=0, report=report)
        watcher.join()  # the peers end their last epoch with rank 0
        if group.failure is not None:
            raise group.failure
        kept = True
    except BaseException as err:
        if is_collateral(err):  # a peer died: the watcher names it once Ray has seen it
            watcher.join(timeout=PEER_LOSS_S)
        if group.failure is not None and err is not group.failure:
            raise group.failure from err  # rank 0's collective broke because a peer did
        raise
    finally:
        if not kept:
            log.info("trial %d: its DDP group is torn down", lease.job_id)
            group.close()
            watcher.join(timeout=GROUP_TIMEOUT_S)  # the killed peers' runs end at once
            _warm = None
