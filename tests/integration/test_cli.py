"""The `recu` command line: train writes a checkpoint that evaluate scores identically;
--config and --set reach every field of the run; the `python -m` doors are its commands."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recu_cli.main import app

runner = CliRunner()


def test_train_from_a_config_file_and_overrides_then_evaluate_and_inspect(tmp_path):
    ckpt = tmp_path / "run.safetensors"
    history = tmp_path / "history.json"
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps(
            {
                "dataset": {"name": "digits", "num_train": 256},
                "epochs": 2,
                "batch_size": 32,
                "optimizer": {"lr": 0.2, "weight_decay": 1e-4},
            }
        )
    )
    result = runner.invoke(
        app,
        [
            *("train", "--config", str(config), "--batch-size", "64"),
            *("--set", "optimizer.lr=0.05", "--set", "binary_options.clamp=false"),
            *("--device", "cpu", "-o", str(ckpt), "--metrics-json", str(history)),
        ],
    )
    assert result.exit_code == 0, result.output
    final = json.loads(history.read_text())[-1]
    text = " ".join(result.output.split())  # rich wraps long lines
    best, best_epoch = final["best_test_acc"], int(final["best_test_epoch"])
    assert re.search(rf"best test accuracy {100 * best:.1f}% \(epoch {best_epoch}\b", text)
    assert f"last epoch's {100 * final['test_acc']:.1f}%" in text
    assert "epoch 2/2" in text
    best_ckpt = ckpt.with_name(f"{ckpt.stem}.best{ckpt.suffix}")
    best_manifest = json.loads(runner.invoke(app, ["inspect", str(best_ckpt)]).output)
    assert best_manifest["epoch"] == best_epoch
    assert best_manifest["accuracy"]["best_test_acc"] == best

    evaluated = runner.invoke(app, ["evaluate", str(ckpt), "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert f"test accuracy {100 * final['test_acc']:.4f}%" in evaluated.output

    inspected = runner.invoke(app, ["inspect", str(ckpt)])
    assert inspected.exit_code == 0
    manifest = json.loads(inspected.output)
    assert manifest["epoch"] == 2
    trained = manifest["config"]  # the file, the shortcut over it, each --set over both
    assert (trained["model"], trained["dataset"]["num_train"], trained["batch_size"]) == (
        "resnet20",
        256,
        64,
    )
    assert trained["optimizer"]["lr"] == 0.05
    assert trained["optimizer"]["weight_decay"] == 1e-4
    assert trained["binary_options"]["clamp"] is False


def _printed_config(*args: str) -> dict:
    result = runner.invoke(app, ["train", "--print-config", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_set_lays_json_or_string_values_over_the_shortcuts_file_and_recipe(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 50\noptimizer:\n  lr: 0.3\n  name: adam\n")
    printed = _printed_config(
        *("--recipe", "cifar10_resnet20", "--config", str(config), "--epochs", "30"),
        *("--set", "epochs=20", "--set", "dataset.name=cifar100", "--set", "device=cuda:1"),
        *("--set", "dataset.crop_scale=[0.08, 1.25]", "--set", 'dataset.root="2024"'),
        *("--set", 'tau={"tau_s": 0.9}'),
    )
    assert printed["epochs"] == 20  # --set over --epochs over the file
    assert printed["optimizer"]["lr"] == 0.3  # the file over the recipe's 0.1
    assert printed["optimizer"]["name"] == "adam"
    assert printed["batch_size"] == 256  # the recipe's, given nowhere else
    assert printed["dataset"]["name"] == "cifar100"
    assert printed["dataset"]["crop_scale"] == [0.08, 1.25]
    assert printed["dataset"]["root"] == "2024"  # a JSON string stays a string
    assert printed["device"] == "cuda:1"
    assert printed["tau"] == {"kind": "exponential", "tau_s": 0.9, "tau_e": 0.99}  # merged


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "optimizer.lrr=0.1"], "unknown field 'optimizer.lrr'; optimizer has: name, lr,"),
        (["--set", "lr=0.1"], "unknown field 'lr'; the spec has: recipe, model,"),
        (["--set", "epochs=many"], "epochs: Input should be a valid integer (got 'many')"),
        (["--set", "optimizer.name=rmsprop"], "optimizer.name: Input should be 'sgd' or 'adam'"),
        (["--set", "epochs.count=3"], "epochs.count: epochs is a value, not a section"),
        (["--set", "optimizer"], "--set 'optimizer': expected PATH=VALUE"),
        (["--set", "optimizer..lr=1"], "expected PATH=VALUE with a dotted PATH"),
        (["--set", "binary_options.clamp=maybe"], "binary_options.clamp: Input should be a valid"),
    ],
)
def test_an_invalid_set_is_an_error_naming_the_field(args, message):
    result = runner.invoke(app, ["train", "--print-config", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_invalid_config_file_is_an_error_naming_the_file_or_field(tmp_path):
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"optimizer": {"learning_rate": 0.1}}')
    broken = tmp_path / "broken.json"
    broken.write_text("{epochs: 3")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    for path, message in [
        (unknown, "unknown field 'optimizer.learning_rate'; optimizer has: name, lr,"),
        (broken, f"spec file {broken}: not valid JSON at line 1, column 2: Expecting property"),
        (listed, f"spec file {listed}: expected a mapping of fields, got list"),
        (tmp_path / "absent.json", "cannot read it (No such file or directory)"),
    ]:
        result = runner.invoke(app, ["train", "--print-config", "--spec", str(path)])
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback


HELP_ENV = {**os.environ, "COLUMNS": "100", "TERMINAL_WIDTH": "100", "NO_COLOR": "1"}


def _help(command: list[str]) -> list[str]:
    done = subprocess.run(
        [*command, "--help"], env=HELP_ENV, capture_output=True, text=True, check=True
    )
    return [line.rstrip() for line in done.stdout.splitlines()]


@pytest.mark.parametrize(
    ("module", "command"),
    [("workers", "worker"), ("service", "serve"), ("recu_core.export", "export")],
)
def test_python_m_is_the_recu_command_of_the_same_name(module, command):
    recu = str(Path(sys.executable).with_name("recu"))
    via_module = _help([sys.executable, "-m", module])
    via_recu = _help([recu, command])
    assert any("--" in line for line in via_recu)  # the options are listed
    assert [line.replace(f"recu {command}", f"python -m {module}") for line in via_recu] == (
        via_module
    )


def test_invalid_tau_is_a_clear_error():
    result = runner.invoke(app, ["train", "--tau-s", "0.4"])
    assert result.exit_code == 2
    assert "tau.tau_s" in result.output
    assert "greater than 0.5" in result.output


def test_missing_dataset_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("RECU_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["train", "--dataset", "cifar10", "--epochs", "1"])
    assert result.exit_code == 2
    assert "cifar-10-batches-py" in result.output.replace("\n", "")  # rich wraps long paths


def test_resume_finishes_an_interrupted_run(tmp_path):
    from recu_core.config import DatasetConfig, TrainConfig
    from recu_core.train import train

    config = TrainConfig(
        dataset=DatasetConfig(name="digits", num_train=256, num_test=64), epochs=2, batch_size=64
    )
    ckpt = tmp_path / "run.safetensors"

    class StopError(Exception):
        pass

    def stop_after_first(report):
        report.save_checkpoint(ckpt)
        raise StopError

    with pytest.raises(StopError):
        train(config, callbacks=[stop_after_first])
    result = runner.invoke(
        app, ["train", "--resume", str(ckpt), "--device", "cpu", "-o", str(ckpt)]
    )
    assert result.exit_code == 0, result.output
    assert "epoch   2/2" in result.output
    assert "epoch   1/2" not in result.output
    assert json.loads(runner.invoke(app, ["inspect", str(ckpt)]).output)["epoch"] == 2


def test_inspect_of_a_non_checkpoint_is_a_clear_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    result = runner.invoke(app, ["inspect", str(notes)])
    assert result.exit_code == 2
    assert "is not a safetensors checkpoint" in " ".join(result.output.split())  # rich wraps


def test_version_prints_the_installed_package_version():
    from importlib.metadata import version

    result = subprocess.run(
        [str(Path(sys.executable).with_name("recu")), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == f"recu {version('recu')}\n"
    assert re.fullmatch(r"recu \d+\.\d+\.\d+\S*\n", result.stdout)
