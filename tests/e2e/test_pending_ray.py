"""A real queue worker on real Ray (the local 2-CPU instance, no GPU) publishes its
cluster, and the API explains every queued job from it: while a CPU job runs, a 1-GPU job
is unschedulable with the numbers and a job needing both CPUs waits for resources; the
worker withdraws when it stops."""

from __future__ import annotations

import re
import threading
import time

import pytest

ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
# the Ray tests share one test process (`--dist loadgroup`, tests/conftest.py)
pytestmark = pytest.mark.xdist_group("ray")

from service.config import ServiceSettings  # noqa: E402
from service.pending import NO_WORKER  # noqa: E402
from tests.api_client import api_client  # noqa: E402
from workers.loop import WorkerSettings, serve  # noqa: E402

SMALL = {
    "dataset": {"name": "digits", "num_train": 256, "num_test": 64},
    "batch_size": 64,
    "kernels": "eager",
    "epochs": 2,
}
GPU_UNSCHEDULABLE = (
    "unschedulable: needs 1 worker x {CPU: 1, GPU: 1}; the largest node has {CPU: 2, GPU: 0}; "
    "the cluster has {CPU: 2, GPU: 0} in 1 node"
)
BUSY = re.compile(
    r"waiting for resources: needs \{CPU: 2, GPU: 0\}, free now \{CPU: ([\d.]+), GPU: 0\}"
)


def test_a_real_worker_publishes_its_cluster_and_a_gpu_job_is_unschedulable(tmp_path, local_ray):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with api_client(ServiceSettings(database_url=url)) as client:
        cpu = client.post("/jobs", json={**SMALL, "priority": 1}).json()["id"]
        gpu = client.post("/jobs", json={**SMALL, "resources": {"use_gpu": True}}).json()["id"]
        both = client.post("/jobs", json={**SMALL, "epochs": 1, "resources": {"num_workers": 2}})
        both = both.json()["id"]
        assert client.get(f"/jobs/{gpu}").json()["pending_reason"] == NO_WORKER
        settings = WorkerSettings(database_url=url, runs_dir=tmp_path / "runs", lease_s=30)
        runner = threading.Thread(target=serve, args=(settings,), kwargs={"exit_when_idle": True})
        runner.start()
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 240
        while runner.is_alive() and time.monotonic() < deadline and len(seen) < 2:
            jobs = {j["id"]: j for j in client.get("/jobs").json()["items"]}
            if jobs[cpu]["state"] == "running":  # its worker has published the cluster by now
                if (jobs[gpu]["pending_reason"] or "").startswith("unschedulable"):
                    seen["gpu"] = jobs[gpu]["pending_reason"]
                if BUSY.fullmatch(jobs[both]["pending_reason"] or ""):
                    seen["both"] = jobs[both]["pending_reason"]
            time.sleep(0.2)
        runner.join(timeout=240)
        assert not runner.is_alive()
        assert seen.get("gpu") == GPU_UNSCHEDULABLE, seen
        assert float(BUSY.fullmatch(seen.get("both", "")).group(1)) < 2, seen  # type: ignore[union-attr]
        # the CPU jobs ran; the GPU job is still queued, and the stopped worker withdrew
        states = {j: client.get(f"/jobs/{j}").json()["state"] for j in (cpu, both, gpu)}
        assert states == {cpu: "succeeded", both: "succeeded", gpu: "queued"}
        assert client.get(f"/jobs/{gpu}").json()["pending_reason"] == NO_WORKER
