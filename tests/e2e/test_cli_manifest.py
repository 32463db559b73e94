"""`recu manifest` and the code line of `recu status` against a real uvicorn server: not
recorded while the job has not started (exit 4, said on stderr), then the manifest rank 0
records (collected by recu_core.provenance, stored as the worker stores it)."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

from recu_cli.errors import ExitCode
from recu_cli.local_service import local_service
from recu_cli.main import app
from recu_db import queue, results
from recu_db.engine import make_engine, make_sessionmaker

runner = CliRunner()


def _record_manifest(db, lease) -> None:
    """What rank 0 records when training starts (workers/train_loop.py)."""
    import torch

    from recu_core.config import DatasetConfig, TrainConfig
    from recu_core.data import load_dataset
    from recu_core.provenance import collect_manifest

    config = TrainConfig(dataset=DatasetConfig(name="digits", num_train=64), epochs=1, seed=7)
    dataset = load_dataset(config.dataset)
    manifest = collect_manifest(config, dataset, torch.device("cpu"), world_size=1)
    assert results.record_manifest(db, lease, manifest.model_dump(mode="json"))


def test_manifest_is_not_found_until_recorded_then_shown_and_named_by_status(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with local_service(tmp_path / "service", database_url=url, workers=0) as service:
        monkeypatch.setenv("RECU_API_URL", service.api)
        monkeypatch.setenv("RECU_API_TOKEN", service.token)
        engine = make_engine(url)
        db = make_sessionmaker(engine)
        assert runner.invoke(app, ["submit", "--epochs", "1"]).exit_code == 0

        early = runner.invoke(app, ["manifest", "1", "--json"])
        assert (early.exit_code, early.stdout) == (ExitCode.NOT_FOUND, "")
        assert "job 1 has no manifest yet: it is recorded when the job starts (it is queued)" in (
            early.stderr
        )
        assert "code:" not in runner.invoke(app, ["status", "1"]).stdout
        unknown = runner.invoke(app, ["manifest", "999"])
        assert unknown.exit_code == ExitCode.NOT_FOUND
        assert "no job 999" in unknown.stderr

        lease = queue.claim(db, "w", lease_s=120)
        _record_manifest(db, lease)
        engine.dispose()
        answer = httpx.get(f"{service.api}/jobs/1/manifest", headers=service.headers).json()
        printed = runner.invoke(app, ["manifest", "1", "--json"])
        assert printed.exit_code == 0, printed.output
        assert json.loads(printed.stdout) == answer
        assert answer["seed"] == 7

        shown = runner.invoke(app, ["manifest", "1"])
        assert shown.exit_code == 0, shown.output
        commit = (answer["git_commit"] or "")[:7] or "unknown"
        code = (
            f"code: recu {answer['recu_version']} (git {commit}"
            f"{', dirty' if answer['git_dirty'] else ''}), torch {answer['packages']['torch']}, "
            "device cpu x1"
        )
        assert shown.stdout.splitlines()[0].startswith(code)
        assert "dataset digits: 64 train / 0 validation" in shown.stdout
        assert code in runner.invoke(app, ["status", "1"]).stdout
