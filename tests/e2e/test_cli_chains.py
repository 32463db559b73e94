"""Chains from the command line against a real uvicorn server: `recu submit --after`,
`--init-from JOB[:last]`, `--distill-from` and `--two-stage` store exactly the chain the
API takes; bad references are usage errors (exit 2) on stderr."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from recu_cli.errors import ExitCode
from recu_cli.main import app

runner = CliRunner()


@pytest.fixture
def running(cli_service):
    """The running service (tests/e2e/conftest.py)."""
    return cli_service.running


def _json(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_submit_names_what_a_job_waits_for_starts_from_and_learns_from(running):
    first = _json(["submit", "--epochs", "1", "--json"])["id"]
    teacher = _json(["submit", "--epochs", "1", "--set", "binary=false", "--json"])["id"]
    chained = _json(
        [
            "submit",
            "--epochs",
            "1",
            "--after",
            f"{first},{teacher}",
            "--init-from",
            f"{first}:last",
            "--distill-from",
            str(teacher),
            "--set",
            "distill.temperature=4",
            "--json",
        ]
    )
    assert chained["state"] == "waiting"
    assert chained["spec"]["after"] == [first, teacher]
    assert chained["spec"]["init_from"] == {"job_id": first, "checkpoint": "last"}
    assert chained["spec"]["distill"] == {
        "teacher_job_id": teacher,
        "checkpoint": "best",
        "temperature": 4.0,
        "weight": 1.0,
    }
    status = runner.invoke(app, ["status", str(chained["id"])])
    assert status.exit_code == 0, status.output
    assert f"waiting for job {first} (queued), job {teacher} (queued) to succeed" in (
        status.stdout.replace("\n", " ")
    )


def test_two_stage_submits_real_weights_then_binary_started_from_stage_ones_best(running):
    both = _json(["submit", "--epochs", "3", "--model", "resnet18", "--two-stage", "--json"])
    stage1, stage2 = both["stage1"], both["stage2"]
    assert stage1["state"] == "queued"
    assert stage1["spec"]["binary_options"]["weights"] == "real"
    assert stage2["state"] == "waiting"
    assert stage2["spec"]["binary_options"]["weights"] == "binary"
    assert stage2["spec"]["init_from"] == {"job_id": stage1["id"], "checkpoint": "best"}
    assert stage1["spec"]["model"] == stage2["spec"]["model"] == "resnet18"
    listed = httpx.get(f"{running.api}/jobs", headers=running.headers).json()["items"]
    assert {j["id"] for j in listed} == {stage1["id"], stage2["id"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--after", "x"], "--after 'x': give job ids separated by commas"),
        (["--init-from", "3:first"], "--init-from '3:first': give a job id, optionally"),
        (["--two-stage", "--init-from", "3"], "--two-stage starts stage 2 from stage 1"),
        (["--two-stage", "--seeds", "0,1"], "--two-stage and --seeds do not go together"),
    ],
)
def test_bad_chain_options_are_usage_errors_on_stderr(running, args, message):
    result = runner.invoke(app, ["submit", *args])
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert message in " ".join(result.stderr.split())
