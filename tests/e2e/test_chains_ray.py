"""Chains of jobs through a real queue worker on real Ray (local instance, CPU), all
submitted at once through the API: a two-stage recipe (stage 1 binary activations and real
weights, stage 2 binary both, started from stage 1's best checkpoint) and a teacher-student
pair (a float teacher, a binary student distilled from it). Each waits for what it names,
takes exactly the checkpoint it names, and a chain that cannot start from the weights it
names fails with a reason that says why."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
# the Ray tests share one test process (`--dist loadgroup`, tests/conftest.py)
pytestmark = pytest.mark.xdist_group("ray")

from service.config import ServiceSettings  # noqa: E402
from tests.api_client import api_client  # noqa: E402
from tests.helpers import assert_ray_cpus_released  # noqa: E402
from workers.loop import WorkerSettings, serve  # noqa: E402

BASE = {
    "dataset": {"name": "digits", "num_train": 256, "num_test": 128},
    "batch_size": 64,
    "epochs": 2,
    "kernels": "eager",
    "checkpoint": {"every_epochs": 1, "keep": 2},
}


def _submit(client, **fields) -> int:
    answer = client.post("/jobs", json={**BASE, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def _lines(client, job_id: int) -> list[str]:
    return [row["line"] for row in client.get(f"/jobs/{job_id}/logs").json()]


def test_a_two_stage_chain_and_a_teacher_student_pair_run_through_a_real_worker(
    tmp_path, local_ray, sqlite_database
):
    url = sqlite_database.url
    settings = WorkerSettings(database_url=url, runs_dir=tmp_path / "runs", lease_s=30)
    with api_client(ServiceSettings(database_url=url)) as client:
        stage1 = _submit(client, binary_options={"weights": "real"})
        stage2 = _submit(client, init_from={"job_id": stage1, "checkpoint": "best"})
        teacher = _submit(client, binary=False)
        student = _submit(
            client, distill={"teacher_job_id": teacher, "checkpoint": "last", "temperature": 2.0}
        )
        mismatched = _submit(client, init_from={"job_id": teacher})  # float into binary
        for waiting in (stage2, student, mismatched):
            assert client.get(f"/jobs/{waiting}").json()["state"] == "waiting"

        serve(settings, exit_when_idle=True)

        jobs = {j: client.get(f"/jobs/{j}").json() for j in (stage1, stage2, teacher, student)}
        for job in jobs.values():
            assert job["state"] == "succeeded", job["error"]
        failed = client.get(f"/jobs/{mismatched}").json()
        assert failed["state"] == "failed"
        assert (
            "cannot start from these weights (a resnet20 checkpoint): missing:" in (failed["error"])
        )

        checkpoints = {j: client.get(f"/jobs/{j}/checkpoints").json() for j in (stage1, teacher)}
        best = next(c for c in checkpoints[stage1] if c["best"])
        last = next(c for c in checkpoints[teacher] if c["last"])
        assert (
            f"starting from the weights of job {stage1}'s best checkpoint {best['id']} "
            f"(epoch {best['epoch']}, sha256 {best['sha256'][:12]})"
        ) in _lines(client, stage2)
        assert (
            f"distilling from job {teacher}'s last checkpoint {last['id']} "
            f"(epoch {last['epoch']}, sha256 {last['sha256'][:12]}), temperature 2, weight 1"
        ) in _lines(client, student)
        # stage 2 ran its own schedule from epoch 1, not stage 1's epochs
        epochs = [m["epoch"] for m in client.get(f"/jobs/{stage2}/metrics").json()]
        assert epochs == [1, 2]
        events = client.get(f"/jobs/{stage2}/events").json()
        assert [e["to_state"] for e in events] == ["waiting", "queued", "running", "succeeded"]
    assert_ray_cpus_released()
