"""A queued job runs on real Ray Train (local instance, 2 gloo DDP workers on CPU) and
its metrics, logs and checkpoint land in the database; the checkpoint evaluates locally
to the accuracy the job reported."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
# the Ray tests share one test process (`--dist loadgroup`, tests/conftest.py)
pytestmark = pytest.mark.xdist_group("ray")

from recu_core.config import DatasetConfig  # noqa: E402
from recu_core.data import load_dataset  # noqa: E402
from recu_core.jobspec import JobSpec  # noqa: E402
from recu_core.train import evaluate_accuracy, load_trained_model  # noqa: E402
from recu_db import queue, reads, results  # noqa: E402
from tests.helpers import START_S, assert_ray_cpus_released, ray_actors, wait_until  # noqa: E402
from workers.loop import WorkerSettings, serve  # noqa: E402

SMALL = {
    "dataset": {"name": "digits", "num_train": 256, "num_test": 64},
    "batch_size": 64,
    "optimizer": {"lr": 0.05},
    "kernels": "eager",
    "resources": {"num_workers": 2},
}


def _spec(**overrides):
    return JobSpec.model_validate({**SMALL, **overrides})


def test_cancel_of_a_running_job_ends_cancelled_and_frees_ray(tmp_path, local_ray, sqlite_database):
    import threading

    db, read = sqlite_database.db, sqlite_database.read
    job, _ = queue.submit(db, _spec(epochs=50))
    settings = WorkerSettings(
        database_url=sqlite_database.url, runs_dir=tmp_path / "runs", lease_s=30
    )
    runner = threading.Thread(target=serve, args=(settings,), kwargs={"exit_when_idle": True})
    runner.start()

    def first_epoch():
        with read() as session:
            return reads.metrics_history(session, job.id)

    def state():
        with read() as session:
            return session.get(type(job), job.id).state

    # the first epoch: the job is really running (a claim, a Ray Train group starting)
    wait_until(first_epoch, timeout=START_S, progress=state, message="the first epoch")
    assert queue.cancel(db, job.id) == "cancelling"
    runner.join(timeout=START_S)  # the group stopping, the worker noticing it is idle
    assert not runner.is_alive()
    with read() as session:
        row = session.get(type(job), job.id)
        epochs = len(reads.metrics_history(session, job.id))
    assert row.state == "cancelled"
    assert epochs < 50
    assert_ray_cpus_released()  # the trainer's actors release their CPUs


def test_concurrent_slots_run_jobs_side_by_side_and_never_overbook_ray(
    tmp_path, local_ray, sqlite_database
):
    """Two 1-CPU jobs run at once on the 2-CPU instance; a 2-CPU job (2 DDP workers on
    Ray Train) waits for both, then trains, checkpoints and evaluates as it reported."""
    from sqlalchemy import select

    from recu_db.models import JobEvent

    url, db = sqlite_database.url, sqlite_database.db
    one = {"num_workers": 1}
    first, _ = queue.submit(db, _spec(epochs=1, resources=one), priority=1)
    second, _ = queue.submit(db, _spec(epochs=1, resources=one), priority=1)
    # 2 DDP workers (gloo): the whole instance; a checkpoint every epoch, the last one kept
    # and exported by the worker when the job succeeds
    wide, _ = queue.submit(
        db, _spec(epochs=2, checkpoint={"every_epochs": 1, "keep": 1, "export": True})
    )

    serve(
        WorkerSettings(database_url=url, runs_dir=tmp_path / "runs", lease_s=30, concurrency=3),
        exit_when_idle=True,
    )

    read = sqlite_database.read
    with read() as session:
        states = [session.get(type(first), j.id).state for j in (first, second, wide)]
        events = session.scalars(select(JobEvent).order_by(JobEvent.id)).all()
    assert states == ["succeeded"] * 3
    started = {e.job_id: e.at for e in events if e.to_state == "running"}
    ended = {e.job_id: e.at for e in events if e.to_state == "succeeded"}
    # the two small jobs overlapped in time ...
    assert max(started[first.id], started[second.id]) < min(ended[first.id], ended[second.id])
    # ... and the wide one was claimed only once both had released their CPUs
    assert started[wide.id] >= max(ended[first.id], ended[second.id])
    _check_the_ddp_job(read, wide.id, tmp_path)


def _check_the_ddp_job(read, job_id, tmp_path):
    """The 2-worker DDP job: every epoch once; keep=1 keeps the newest checkpoint and the
    best epoch's; the newest downloads with the stored sha256 and evaluates in recu_core
    to the accuracy the job reported."""
    with read() as session:
        history = reads.metrics_history(session, job_id)
        stored = reads.job_checkpoints(session, job_id)
        logs = [line.line for line in reads.log_lines(session, job_id, offset=0, limit=100)]
    assert [m.epoch for m in history] == [1, 2]
    best_epoch = int(history[-1].metrics["best_epoch"])
    assert [c.epoch for c in stored] == sorted({best_epoch, 2})
    assert logs[0].startswith("data loader: memory")
    assert logs[-1].startswith("epoch 2/2")
    path = tmp_path / "final.safetensors"
    path.write_bytes(b"".join(results.iter_checkpoint_bytes(read, stored[-1].id)))
    model = load_trained_model(path, expected_sha256=stored[-1].sha256)
    accuracy = evaluate_accuracy(
        model, load_dataset(DatasetConfig(name="digits", num_test=64, num_train=256)), device="cpu"
    )
    assert accuracy == pytest.approx(history[-1].metrics["test_acc"], abs=1e-9)
    # checkpoint.export: every kept checkpoint has its .bnn, packed from its stored bytes,
    # and the newest evaluates on the 1-bit engine to the float model's accuracy
    from recu_core.export.bnn_file import read_bnn
    from recu_core.model_files import evaluate_file

    exports = [results.read_export(read, c.id) for c in stored]
    assert all(e is not None and e.job_id == job_id for e in exports)
    assert [read_bnn(e.data)[1]["source_sha256"] for e in exports] == [c.sha256 for c in stored]
    packed = tmp_path / "final.bnn"
    packed.write_bytes(exports[-1].data)
    assert evaluate_file(packed).accuracy == pytest.approx(accuracy, abs=1e-9)


def test_an_export_job_runs_in_a_real_worker_and_stores_the_bnn(
    tmp_path, local_ray, sqlite_database, trained_checkpoint
):
    import io

    from recu_core.export.bnn_file import read_bnn
    from recu_db.states import JobState

    db = sqlite_database.db
    queue.submit(db, _spec(epochs=1))
    train = queue.claim(db, "test", lease_s=60)
    ckpt = results.store_checkpoint(
        db, train, 1, {}, io.BytesIO(trained_checkpoint.read_bytes()), keep=1
    )
    assert queue.finish(db, train, JobState.SUCCEEDED)
    _, job, created = queue.submit_export(db, ckpt.id)
    assert created
    settings = WorkerSettings(
        database_url=sqlite_database.url, runs_dir=tmp_path / "runs", lease_s=30
    )
    serve(settings, exit_when_idle=True)
    with sqlite_database.read() as session:
        assert session.get(type(job), job.id).state == "succeeded"
    stored = results.read_export(db, ckpt.id)
    assert stored is not None
    assert stored.job_id == job.id
    assert read_bnn(stored.data)[1]["source_sha256"] == ckpt.sha256


def test_one_rank_jobs_reuse_a_warm_rank_give_its_room_up_and_survive_its_loss(
    tmp_path, local_ray, sqlite_database
):
    """One-rank jobs run on warm ranks (workers/warm_rank.py): two 1-CPU jobs run on one
    actor; a 2-CPU job on the 2-CPU instance gets the room the idle 1-CPU actor held (it
    is killed) and a new actor, which the next 2-CPU job reuses; that actor SIGKILLed
    mid-job is replaced and the job resumes from its newest checkpoint under the same
    lease (attempt 1), every epoch once. 3 actors ran the 4 jobs; Ray gets every CPU
    back when the worker stops."""
    import os
    import signal
    import threading

    db, read = sqlite_database.db, sqlite_database.read
    one, both = {"num_workers": 1}, {"num_workers": 1, "cpus_per_worker": 2}
    epochs = 20
    jobs = [
        queue.submit(db, _spec(epochs=1, resources=one))[0],
        queue.submit(db, _spec(epochs=1, resources=one))[0],
        queue.submit(db, _spec(epochs=1, resources=both))[0],
        queue.submit(
            db,
            _spec(epochs=epochs, resources=both, checkpoint={"every_epochs": 1, "keep": 1}),
        )[0],
    ]
    last = jobs[-1]
    before = set(ray_actors("WarmRank"))
    settings = WorkerSettings(
        database_url=sqlite_database.url, runs_dir=tmp_path / "runs", lease_s=30
    )
    runner = threading.Thread(target=serve, args=(settings,), kwargs={"exit_when_idle": True})
    runner.start()

    def row(job):
        with read() as session:
            return session.get(type(job), job.id)

    def checkpointed() -> bool:
        with read() as session:
            return bool(reads.job_checkpoints(session, last.id))

    wait_until(
        checkpointed,
        timeout=START_S,
        progress=lambda: [(r.state, r.current_epoch) for r in map(row, jobs)],
        message="the last job's first checkpoint",
    )
    assert row(last).current_epoch < epochs, "the job ended before its rank could be killed"
    alive = [
        pid
        for a, (pid, state) in ray_actors("WarmRank").items()
        if a not in before and state == "ALIVE"
    ]
    assert len(alive) == 1, alive  # the 1-CPU actor gave its room up for the 2-CPU jobs
    os.kill(alive[0], signal.SIGKILL)
    runner.join(timeout=START_S * 2)  # a new actor starting, the remaining epochs
    assert not runner.is_alive()

    assert [(r.state, r.attempt) for r in map(row, jobs)] == [("succeeded", 1)] * 4
    with read() as session:
        history = [m.epoch for m in reads.metrics_history(session, last.id)]
        lines = [ln.line for ln in reads.log_lines(session, last.id, offset=0, limit=1000)]
    assert history == list(range(1, epochs + 1))
    assert sum(line.startswith("data loader:") for line in lines) == 2  # the restart's too
    assert len(set(ray_actors("WarmRank")) - before) == 3
    assert_ray_cpus_released()
