"""The framework's floor: what a bare FastAPI endpoint serves on this machine, beside the
service's own endpoints, so the API's figures read against the stack they run on.

A minimal app (this module's ``app``: no database, no auth, no middleware) on the same
server stack as the service (uvicorn, one process, uvloop + httptools when installed, no
access log), driven by ``bench.load``'s client, 8 closed-loop connections, ``--seconds``
per phase: ``POST`` of a small JSON body validated by a pydantic model, answered 201 with
a dict of twenty fields (a job's view is about that), and ``GET`` of such a dict by id;
each as a sync endpoint (``def``: FastAPI runs it on a worker thread, as the service's
routes) and as an ``async def`` one (on the event loop).

    .venv/bin/python -m bench.framework_floor [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from bench.common import environment
from bench.load import _load, _ms, _raw, _run
from recu_cli.local_service import free_port


class Body(BaseModel):
    model: str = Field(max_length=40)
    epochs: int = Field(ge=1, le=10_000)
    lr: float = Field(gt=0, allow_inf_nan=False)
    dataset: dict[str, str]


def _view(i: int) -> dict[str, object]:
    return {f"field_{k}": (k * i if k % 2 else f"value {k}") for k in range(20)}


app = FastAPI()


@app.post("/sync", status_code=201)
def post_sync(body: Body) -> dict[str, object]:
    return _view(body.epochs)


@app.post("/async", status_code=201)
async def post_async(body: Body) -> dict[str, object]:
    return _view(body.epochs)


@app.get("/sync/{job_id}")
def get_sync(job_id: int) -> dict[str, object]:
    return _view(job_id)


@app.get("/async/{job_id}")
async def get_async(job_id: int) -> dict[str, object]:
    return _view(job_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    print(f"# bare FastAPI on uvicorn, {args.connections} connections; {environment()}")
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "bench.framework_floor:app"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    )
    try:
        wait_ready_path(api)
        host = f"127.0.0.1:{port}"
        body = json.dumps(
            {"model": "resnet20", "epochs": 30, "lr": 0.1, "dataset": {"name": "digits"}}
        ).encode()
        print("| endpoint | req/s | p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|")
        for label, raw, status in (
            ("POST, sync def", _raw("POST", "/sync", host, None, body), 201),
            ("POST, async def", _raw("POST", "/async", host, None, body), 201),
            ("GET by id, sync def", _raw("GET", "/sync/7", host, None), 200),
            ("GET by id, async def", _raw("GET", "/async/7", host, None), 200),
        ):
            kinds, elapsed = _run(
                _load(
                    api,
                    [(label, raw, status, 1.0)],
                    connections=args.connections,
                    seconds=args.seconds,
                    timeout=30,
                )
            )
            kind = kinds[label]
            print(
                f"| {label} | {len(kind.latencies) / elapsed:.0f} | {_ms(kind.latencies, 0.5)} | "
                f"{_ms(kind.latencies, 0.99)} | {sum(kind.errors.values())} |"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_ready_path(api: str, seconds: float = 60) -> None:
    """Until the bare app answers (it has no /health of its own: its OpenAPI page)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the bare app did not answer at {api}")


if __name__ == "__main__":
    main()
