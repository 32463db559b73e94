"""`recu submit --wait`, `recu jobs` and `recu status` say why a job cannot start, against
a real uvicorn server over loopback HTTP."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from recu_cli import client as cli
from recu_cli.local_service import local_service
from recu_cli.main import app
from recu_db import cluster
from recu_db.engine import make_engine, make_sessionmaker

runner = CliRunner()
REASON = (
    "unschedulable: needs 1 worker x {CPU: 1, GPU: 1}; the largest node has {CPU: 2, GPU: 0}; "
    "the cluster has {CPU: 2, GPU: 0} in 1 node"
)


def test_submit_wait_stops_with_the_reason_when_no_node_can_place_the_job(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with local_service(tmp_path / "service", database_url=url, workers=0) as service:
        monkeypatch.setenv("RECU_API_TOKEN", service.token)
        engine = make_engine(url)
        cluster.publish(make_sessionmaker(engine), "w1", [{"CPU": 2.0, "GPU": 0.0}], {"CPU": 2.0})
        engine.dispose()
        spec = tmp_path / "gpu.json"
        spec.write_text(json.dumps({"epochs": 1, "resources": {"use_gpu": True}}))
        # the stream's first state says unschedulable: the follow ends there, no waiting
        waited = runner.invoke(app, ["submit", "--spec", str(spec), "--wait", "--api", service.api])
        assert waited.exit_code == cli.UNSCHEDULABLE == 3, waited.output
        assert f"job 1 cannot start: {REASON}" in " ".join(waited.output.split())
        listing = runner.invoke(app, ["jobs", "--api", service.api])
        assert listing.exit_code == 0, listing.output
        assert f"job 1 queued: {REASON}" in " ".join(listing.output.split())
        status = runner.invoke(app, ["status", "1", "--json", "--api", service.api])
        assert json.loads(status.stdout)["pending_reason"] == REASON
        summary = runner.invoke(app, ["status", "1", "--api", service.api])
        assert f"waiting: {REASON}" in summary.stdout
