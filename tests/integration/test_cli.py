"""The `recu` command line: train writes a checkpoint that evaluate scores identically."""

import json
import re

import pytest
from typer.testing import CliRunner

from recu_cli.main import app

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
    text = " ".join(result.output.split())  # rich wraps long lines
    best, best_epoch = final["best_test_acc"], int(final["best_test_epoch"])
    assert re.search(rf"best test accuracy {100 * best:.2f}% \(epoch {best_epoch}\b", text)
    assert f"last epoch's {100 * final['test_acc']:.2f}%" in text
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
