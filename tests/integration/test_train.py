"""The training function: learning, exact resume, callbacks, no per-step host syncs."""

import itertools

import pytest
import torch

from recu_core.checkpoint import load_checkpoint
from recu_core.config import DatasetConfig, OptimizerConfig, TrainConfig
from recu_core.data import load_dataset
from recu_core.train import evaluate_accuracy, load_trained_model, train
from tests.helpers import HostSyncs

SMALL = TrainConfig(
    model="resnet20",
    dataset=DatasetConfig(name="digits", num_train=320, num_test=100),
    epochs=4,
    batch_size=64,
    optimizer=OptimizerConfig(lr=0.05),
)


class _CrashError(RuntimeError):
    pass


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    full = train(SMALL)
    ckpt = tmp_path / "epoch2.safetensors"

    def crash_after_two(report):
        if report.epoch == 2:
            report.save_checkpoint(ckpt)
            raise _CrashError

    with pytest.raises(_CrashError):
        train(SMALL, callbacks=[crash_after_two])
    resumed = train(SMALL, resume_from=ckpt)

    assert [h["epoch"] for h in resumed.history] == [3.0, 4.0]
    for a, b in zip(full.history[2:], resumed.history, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "tau", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_resume_under_a_different_recipe_names_the_fields(tmp_path):
    ckpt = tmp_path / "one.safetensors"
    train(SMALL.model_copy(update={"epochs": 1}), callbacks=[lambda r: r.save_checkpoint(ckpt)])
    changed = SMALL.model_copy(update={"seed": 3, "batch_size": 32})
    with pytest.raises(ValueError, match="different batch_size, epochs, seed"):
        train(changed, resume_from=ckpt)


def test_history_callbacks_and_checkpoint_manifest(tmp_path):
    seen = []
    path = tmp_path / "final.safetensors"

    def record(report):
        seen.append(report.epoch)
        if report.epoch == report.total_epochs:
            report.save_checkpoint(path)

    result = train(SMALL, callbacks=[record])
    assert seen == [1, 2, 3, 4]
    assert [h["epoch"] for h in result.history] == [1.0, 2.0, 3.0, 4.0]
    assert result.history[0]["tau"] == pytest.approx(0.85)
    assert all(0.0 <= h["test_acc"] <= 1.0 for h in result.history)
    assert len(result.telemetry) == 4
    assert len(result.telemetry[-1]["layers"]) == 18

    manifest = load_checkpoint(path).manifest
    assert manifest["epoch"] == 4
    assert TrainConfig.model_validate(manifest["config"]) == SMALL
    model = load_trained_model(path)
    accuracy = evaluate_accuracy(model, load_dataset(SMALL.dataset), device="cpu")
    assert accuracy == pytest.approx(result.final["test_acc"], abs=1e-9)


def _host_syncs_per_epoch(num_train: int, epochs: int) -> list[list[str]]:
    """The host synchronisations of a whole run, split at the end of each epoch (the first
    span holds the set-up too)."""
    config = SMALL.model_copy(
        update={
            "epochs": epochs,
            "dataset": SMALL.dataset.model_copy(update={"num_train": num_train}),
        }
    )
    dataset = load_dataset(config.dataset)
    ends: list[int] = []
    with HostSyncs() as syncs:
        train(config, dataset=dataset, callbacks=[lambda _: ends.append(len(syncs.seen))])
    return [syncs.seen[a:b] for a, b in itertools.pairwise([0, *ends])]


def test_training_loop_syncs_the_host_once_per_epoch_however_many_steps():
    """The per-model test's strict detector (tests/helpers.py: scalar reads, data-dependent
    shapes, host-built tensors, boolean masks, tolist/numpy/cpu) on the whole loop: each
    epoch after the first makes exactly one host synchronisation, the transfer of its
    figures, with 2 steps an epoch as with 5, and set-up plus first epoch make the same
    ones in both runs. A sync in a step, an evaluation batch or a schedule would add one
    per step."""
    two_steps, five_steps = _host_syncs_per_epoch(128, 3), _host_syncs_per_epoch(320, 3)
    for epochs in (two_steps, five_steps):
        assert len(epochs) == 3
        assert epochs[1:] == [["Tensor.tolist"], ["Tensor.tolist"]]
        assert epochs[0][-1] == "Tensor.tolist"  # after the set-up's (BatchNorm's host tensors)
    assert two_steps[0] == five_steps[0]


@pytest.mark.slow
def test_recu_resnet20_learns_digits():
    config = TrainConfig(
        model="resnet20",
        dataset=DatasetConfig(name="digits"),
        epochs=30,
        batch_size=32,
        optimizer=OptimizerConfig(lr=0.1),
        kernels="eager",  # the compiled kernel equals eager (test_quantizers); no compile wait
    )
    result = train(config)
    assert result.final["test_acc"] >= 0.93, result.history[-1]
