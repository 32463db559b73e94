"""The job lifecycle a user sees through the API, with a real worker on real Ray Train
(2 gloo DDP workers on CPU): a cancel ends the job cancelled within a step, with no
error and no restart; a job whose own code raises is failed once, with its traceback."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
pytestmark = pytest.mark.xdist_group("ray")  # the Ray tests share one test process

from recu_core.settings import DataSettings, ServiceSettings, WorkerSettings  # noqa: E402
from tests.api_client import api_client  # noqa: E402
from tests.helpers import START_S, ray_actors, wait_until  # noqa: E402
from workers.loop import serve  # noqa: E402

DDP = {
    "dataset": {"name": "digits", "num_train": 1024, "num_test": 64},
    "batch_size": 16,
    "optimizer": {"lr": 0.05},
    "kernels": "eager",
    "resources": {"num_workers": 2},
}


@pytest.fixture
def service(tmp_path: Path, local_ray: None) -> Iterator[tuple]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with api_client(ServiceSettings(database_url=url)) as client:
        settings = WorkerSettings(database_url=url, runs_dir=tmp_path / "runs", lease_s=30)
        yield client, settings, tmp_path / "runs"


def _all_cpus_free() -> bool:
    return ray.available_resources().get("CPU") == ray.cluster_resources().get("CPU")


def _runs(runs: Path, job_id: int) -> list[str]:
    """The Ray Train runs (worker groups) started for the job: one per fit()."""
    return sorted(p.name for p in runs.glob(f"job-{job_id}*")) if runs.exists() else []


def test_a_cancelled_running_job_ends_cancelled_within_a_step_without_error(service):
    client, settings, runs = service
    job = client.post("/jobs", json={**DDP, "epochs": 200}).json()
    worker = threading.Thread(target=serve, args=(settings,), kwargs={"exit_when_idle": True})
    worker.start()

    def epochs() -> int:
        return client.get(f"/jobs/{job['id']}").json()["current_epoch"]

    wait_until(lambda: epochs() >= 1, timeout=START_S, message="the first epoch")
    epoch_s = client.get(f"/jobs/{job['id']}/metrics").json()[0]["metrics"]["epoch_time_s"]
    requested = time.monotonic()
    assert client.post(f"/jobs/{job['id']}/cancel").json()["state"] == "cancelling"
    at_request = epochs()
    done = wait_until(
        lambda: (view := client.get(f"/jobs/{job['id']}").json())["terminal"] and view,
        timeout=START_S,
        message="the job to end",
    )
    latency = time.monotonic() - requested
    worker.join(timeout=START_S)
    assert not worker.is_alive()
    print(f"cancel -> cancelled in {latency:.2f} s (one epoch: {epoch_s:.2f} s)")
    assert (done["state"], done["error"], done["attempt"]) == ("cancelled", None, 1)
    # stopped within the epoch it was in (checked before every step), not at its end or
    # after a second worker group: at most the epoch in flight when the request landed
    assert done["current_epoch"] <= at_request + 1
    assert _runs(runs, job["id"]) == [f"job-{job['id']}"]  # no restart of the group
    logs = [line["line"] for line in client.get(f"/jobs/{job['id']}/logs").json()]
    assert not any("Traceback" in line or "Error" in line for line in logs), logs
    assert logs[-1] == "stopped on request: the job was cancelled"
    events = client.get(f"/jobs/{job['id']}/events").json()
    assert [e["to_state"] for e in events] == ["queued", "running", "cancelling", "cancelled"]
    assert wait_until(_all_cpus_free, timeout=60, message="Ray's CPUs to be free")


@pytest.mark.parametrize("ranks", [2, 1], ids=["ray-train", "warm-rank"])
def test_a_job_whose_code_raises_is_failed_once_with_its_traceback(service, ranks):
    """Training code that raises (here the loader, on a folder whose one image is not a
    JPEG; `make test` gives the workers an absolute RECU_DATA_DIR, where a relative one is
    not found from a Ray worker's directory: also an error of the job's) fails it at its
    first try, on Ray Train (2 ranks) and on a warm rank (1): one worker group or one
    actor, no retry of the attempt, the exception named in the error and its traceback
    in the logs. (A lost worker is still retried: tests/e2e/test_faults.py,
    tests/e2e/test_worker_ray.py.)"""
    client, settings, runs = service
    before = set(ray_actors("WarmRank"))
    data_dir = DataSettings().data_dir
    name = f"e2e-broken-{uuid.uuid4().hex[:8]}"
    for split in ("train", "test"):
        (data_dir / name / split / "a").mkdir(parents=True)
        (data_dir / name / split / "a" / "0.jpg").write_bytes(b"not a jpeg")
    try:
        spec = {
            **DDP,
            "epochs": 2,
            "dataset": {"name": "imagefolder", "root": name},
            "resources": {"num_workers": ranks},
        }
        job = client.post("/jobs", json=spec).json()
        assert job["max_attempts"] == 3
        serve(settings, exit_when_idle=True)
    finally:
        shutil.rmtree(data_dir / name)
    view = client.get(f"/jobs/{job['id']}").json()
    assert (view["state"], view["attempt"], view["terminal"]) == ("failed", 1, True)
    assert name in view["error"], view["error"]  # the loader's own message, naming the folder
    assert "WorkerGroupError" not in view["error"], view["error"]
    if ranks > 1:  # run once, not restarted
        assert _runs(runs, job["id"]) == [f"job-{job['id']}"]
    else:  # one actor, not replaced (its process is not reused after the code's error)
        assert (_runs(runs, job["id"]), len(set(ray_actors("WarmRank")) - before)) == ([], 1)
    logs = "\n".join(line["line"] for line in client.get(f"/jobs/{job['id']}/logs").json())
    assert "Traceback" in logs
    assert name in logs
    assert wait_until(_all_cpus_free, timeout=60, message="Ray's CPUs to be free")
