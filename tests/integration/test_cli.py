"""The `recu` command line: train writes a checkpoint that evaluate scores identically."""

import json
import re

from typer.testing import CliRunner

from recu_core.cli import app

runner = CliRunner()


def test_train_then_evaluate_and_inspect(tmp_path):
    ckpt = tmp_path / "run.safetensors"
    history = tmp_path / "history.json"
    result = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "digits",
            "--num-train",
            "256",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "-o",
            str(ckpt),
            "--metrics-json",
            str(history),
        ],
    )
    assert result.exit_code == 0, result.output
    final = json.loads(history.read_text())[-1]
    assert re.search(rf"final test accuracy {100 * final['test_acc']:.2f}%", result.output)
    assert "epoch   2/2" in result.output

    evaluated = runner.invoke(app, ["evaluate", str(ckpt), "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert f"test accuracy {100 * final['test_acc']:.4f}%" in evaluated.output

    inspected = runner.invoke(app, ["inspect", str(ckpt)])
    assert inspected.exit_code == 0
    manifest = json.loads(inspected.output)
    assert manifest["epoch"] == 2
    assert manifest["config"]["model"] == "resnet20"


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
