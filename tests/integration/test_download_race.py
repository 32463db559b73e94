"""Downloads and exports racing keep-K pruning, on SQLite and PostgreSQL.

A checkpoint is read from one snapshot into a temporary file before the status line is
sent (``results.read_checkpoint``), so a download that races a prune gets either the
complete body with the right sha256 or a 404 before any byte: never a 200 cut short
(which is what reading one chunk per transaction while streaming gave), and an export
of a pruned checkpoint is a 404, not a 422.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from recu_cli.local_service import local_service
from recu_core.jobspec import JobSpec
from recu_db import queue, results
from recu_db.engine import make_engine, make_read_sessionmaker, make_sessionmaker
from recu_db.queue import Lease

MIB = 1 << 20


@pytest.fixture
def service(database_url, tmp_path):
    """A real API process on the test's database, a job of its token's user claimed by a
    (simulated) worker, and write sessions to store and prune that job's checkpoints."""
    with local_service(tmp_path / "service", database_url=database_url, workers=0) as svc:
        engine = make_engine(database_url)
        db = make_sessionmaker(engine)
        with svc.client() as client:
            client.post("/jobs", json={"epochs": 100}).raise_for_status()
            lease = queue.claim(db, "w", lease_s=600)
            assert lease is not None
            yield client, db, lease
        engine.dispose()


def _store(db, lease: Lease, epoch: int, payload: bytes) -> int:
    ckpt = results.store_checkpoint(db, lease, epoch, {}, io.BytesIO(payload), keep=1)
    assert ckpt is not None
    return ckpt.id


def test_a_prune_after_the_headers_leaves_the_body_complete(service):
    client, db, lease = service
    payload = os.urandom(24 * MIB)  # many chunks, more than the socket buffers hold
    ckpt_id = _store(db, lease, 1, payload)
    with client.stream("GET", f"/checkpoints/{ckpt_id}/download") as response:
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == len(payload)
        chunks = response.iter_bytes()
        body = next(chunks)
        _store(db, lease, 2, b"newer")  # keep=1: the one being downloaded is pruned
        body += b"".join(chunks)
    assert len(body) == len(payload)
    assert hashlib.sha256(body).hexdigest() == response.headers["x-checkpoint-sha256"]
    assert body == payload

    gone = client.get(f"/checkpoints/{ckpt_id}/download")
    assert gone.status_code == 404
    assert gone.json() == {"detail": f"no checkpoint {ckpt_id}"}
    exported = client.get(f"/checkpoints/{ckpt_id}/export")
    assert exported.status_code == 404  # not 422: the export never saw half a checkpoint
    assert exported.json() == {"detail": f"no checkpoint {ckpt_id}"}


def test_downloads_racing_prunes_are_complete_or_a_clean_404(service):
    client, db, lease = service
    rng = random.Random(14)
    outcomes: list[str] = []
    for epoch in range(1, 9):
        payload = rng.randbytes(3 * MIB + rng.randrange(MIB))
        ckpt_id = _store(db, lease, epoch, payload)
        start = threading.Barrier(5)

        def download(
            ckpt_id: int = ckpt_id, payload: bytes = payload, start: threading.Barrier = start
        ) -> str:
            start.wait()
            with client.stream("GET", f"/checkpoints/{ckpt_id}/download") as response:
                if response.status_code == 404:
                    assert response.read() == f'{{"detail":"no checkpoint {ckpt_id}"}}'.encode()
                    return "404"
                assert response.status_code == 200
                body = response.read()
            assert len(body) == len(payload)
            assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()
            return "200"

        def prune(epoch: int = epoch, start: threading.Barrier = start) -> str:
            start.wait()
            threading.Event().wait(rng.random() * 0.05)
            _store(db, lease, 100 + epoch, b"newer")
            return "pruned"

        with ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(download) for _ in range(4)] + [pool.submit(prune)]
            outcomes += [f.result() for f in futures]
    assert outcomes.count("pruned") == 8
    assert outcomes.count("200") + outcomes.count("404") == 32


def test_a_snapshot_read_is_whole_though_a_prune_commits_midway(engine):
    """The mechanism itself: the prune commits on another connection while the reader is
    between chunks; the reader still gets every chunk of its snapshot."""
    db, read = make_sessionmaker(engine), make_read_sessionmaker(engine)
    queue.submit(db, JobSpec())
    lease = queue.claim(db, "w", lease_s=600)
    assert lease is not None
    payload = os.urandom(5 * results.CHUNK_BYTES + 17)
    ckpt_id = _store(db, lease, 1, payload)

    class PruneOnFirstWrite(io.BytesIO):
        pruned = False

        def write(self, data) -> int:  # type: ignore[override]
            if not self.pruned:
                self.pruned = True
                _store(db, lease, 2, b"newer")  # commits: ckpt_id's rows are deleted
            return super().write(data)

    into = PruneOnFirstWrite()
    ckpt = results.read_checkpoint(read, ckpt_id, into)
    assert into.pruned
    assert ckpt is not None
    assert ckpt.sha256 == hashlib.sha256(payload).hexdigest()
    assert into.getvalue() == payload
    assert results.read_checkpoint(read, ckpt_id, io.BytesIO()) is None  # gone now
