"""The `recu` command line explains itself: help texts keep their `[env: ...]` notes
(rich markup would eat bare brackets), carry no backticks, and the top-level help lists
every command; a device the machine lacks is refused in one line, locally and for a job;
`recu inspect` reads a packed .bnn export as it reads a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import torch
from typer.main import get_command
from typer.testing import CliRunner

from recu_cli.errors import ExitCode
from recu_cli.main import app

runner = CliRunner()
WIDE = {"COLUMNS": "240", "NO_COLOR": "1", "TERMINAL_WIDTH": "240"}


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path under ``group``, subcommands of subgroups included."""
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


def _help(*path: str) -> str:
    result = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.stdout


ALL = _commands(get_command(app))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_no_help_text_shows_backticks(path):
    assert "`" not in _help(*path)


@pytest.mark.parametrize(
    ("path", "variable"),
    [
        (("worker",), "[env: RECU_WORKER_CONCURRENCY; default 1]"),
        (("serve",), "[env: RECU_API_WORKERS; default 1]"),
        (("token", "create"), "[env: RECU_DATABASE_URL; default the embedded SQLite file]"),
        (("jobs",), "[env: RECU_API_TOKEN]"),
        (("download",), "[env: RECU_API_URL; default http://127.0.0.1:8000]"),
    ],
)
def test_env_notes_survive_the_markup(path, variable):
    assert variable in " ".join(_help(*path).replace("│", " ").split())


def test_top_level_help_lists_every_command_and_the_exit_codes():
    shown = _help()
    for path in ALL:
        if len(path) == 1:
            assert f" {path[0]} " in shown, path
    assert "4 not found, 5 not authorised, 6 service unreachable" in " ".join(shown.split())


def test_the_option_names_say_what_they_count():
    submit = " ".join(_help("submit").split())
    assert "--ranks" in submit
    assert "DDP ranks" in submit
    assert "--workers" not in submit  # the deprecated alias works but is not offered
    assert "API server processes" in " ".join(_help("serve").split())
    sweep = " ".join(_help("sweep").replace("│", " ").split())
    assert "num_samples: the number of trials; with grid fields in the space, trials per" in sweep


def test_a_device_the_machine_lacks_is_refused_locally_and_for_a_job(tmp_path):
    spec = tmp_path / "run.json"
    spec.write_text(json.dumps({"device": "cuda:7", "epochs": 1, "dataset": {"name": "digits"}}))
    local = runner.invoke(app, ["train", "--spec", str(spec), "-o", str(tmp_path / "x.st")])
    assert local.exit_code == ExitCode.USAGE
    assert local.stdout == ""
    lines = local.stderr.strip().splitlines()
    assert len(lines) == 1
    if torch.cuda.is_available():
        assert f"this machine has {torch.cuda.device_count()} CUDA device(s)" in lines[0]
    else:
        assert "device 'cuda:7'" in lines[0]
        assert "finds no CUDA device on this machine; use --device cpu" in lines[0]
    job = runner.invoke(app, ["submit", "--spec", str(spec), "--api", "http://127.0.0.1:9"])
    assert job.exit_code == ExitCode.USAGE  # refused before any request
    assert "contradicts resources.use_gpu=False" in job.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_spec_asking_for_cuda_trains_there(tmp_path):
    spec = tmp_path / "run.json"
    spec.write_text(
        json.dumps({"device": "cuda", "epochs": 1, "dataset": {"name": "digits", "num_train": 128}})
    )
    out = tmp_path / "run.safetensors"
    trained = runner.invoke(app, ["train", "--spec", str(spec), "-o", str(out)])
    assert trained.exit_code == 0, trained.output
    assert "(cuda)" in trained.stdout
    assert json.loads(runner.invoke(app, ["inspect", str(out)]).stdout)["config"]["device"] == (
        "cuda"
    )


def test_inspect_reads_a_bnn_export_and_names_a_file_that_is_not_one(
    trained_checkpoint: Path, tmp_path
):
    packed = tmp_path / "model.bnn"
    assert runner.invoke(app, ["export", str(trained_checkpoint), "-o", str(packed)]).exit_code == 0
    shown = json.loads(runner.invoke(app, ["inspect", str(packed)]).stdout)
    assert shown["format"] == "recu-bnn"
    assert shown["summary"]["model"] == "resnet20"
    assert shown["summary"]["binary_layers"] == len(shown["layers"])
    assert shown["config"]["model"] == "resnet20"  # the manifest it carries, whole
    fake = tmp_path / "fake.bnn"
    fake.write_text("not a model")
    refused = runner.invoke(app, ["inspect", str(fake)])
    assert refused.exit_code == ExitCode.USAGE
    assert f"{fake}: not a .bnn file" in refused.stderr
