"""The training side of job chains (recu_core): a run started from another run's weights
(``init_weights``: weights only) and distillation from a teacher's soft targets
(``recu_core.distill``), against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recu_core.checkpoint import load_checkpoint
from recu_core.config import TrainConfig
from recu_core.distill import Distillation, distribution_loss
from recu_core.train import EpochReport, start_from_weights, train

TINY = {
    "model": "resnet20",
    "dataset": {"name": "digits", "num_train": 64, "num_test": 32},
    "batch_size": 32,
    "epochs": 1,
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_the_distribution_loss_and_its_gradient_match_numpy(temperature):
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 7))
    t = rng.normal(size=(5, 7)) * 3
    student = torch.tensor(s, requires_grad=True)
    loss = distribution_loss(student, torch.tensor(t), temperature)
    p_t = _softmax(t / temperature)
    log_p_s = np.log(_softmax(s / temperature))
    expected = temperature**2 * -(p_t * log_p_s).sum(axis=1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    # d/ds = T^2 * (1/T) * (softmax(s/T) - softmax(t/T)) / B
    grad = temperature * (_softmax(s / temperature) - p_t) / s.shape[0]
    np.testing.assert_allclose(student.grad.numpy(), grad, rtol=1e-5, atol=1e-8)  # float32


def test_the_weight_mixes_the_hard_labels_in():
    teacher = torch.nn.Linear(4, 3)
    x = torch.randn(6, 4)
    logits = torch.randn(6, 3)
    hard = F.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1, 2]))
    with torch.no_grad():
        soft = distribution_loss(logits, teacher(x))
    assert Distillation(teacher, weight=1.0).loss(x, logits, hard).item() == pytest.approx(
        soft.item()
    )
    assert Distillation(teacher, weight=0.0).loss(x, logits, hard).item() == pytest.approx(
        hard.item()
    )
    mixed = Distillation(teacher, weight=0.25).loss(x, logits, hard).item()
    assert mixed == pytest.approx(0.75 * hard.item() + 0.25 * soft.item(), rel=1e-6)


def test_a_run_starts_from_another_runs_weights_but_not_its_optimizer_or_epoch(tmp_path):
    first = tmp_path / "first.safetensors"

    def keep(report: EpochReport) -> None:
        report.save_checkpoint(first)

    train(TrainConfig.model_validate(TINY), callbacks=[keep])
    weights = load_checkpoint(first).model_state
    # a near-zero learning rate: what the second run ends with is what it started from
    slow = TrainConfig.model_validate(
        {**TINY, "seed": 5, "epochs": 2, "optimizer": {"lr": 1e-12, "weight_decay": 0.0}}
    )
    epochs: list[int] = []
    started = train(slow, init_weights=first, callbacks=[lambda r: epochs.append(r.epoch)])
    fresh = train(slow)
    name = "blocks.0.conv1.weight"  # a binary conv's latent weight
    start_state = started.model.state_dict()
    torch.testing.assert_close(start_state[name], weights[name], rtol=0, atol=1e-6)
    assert not torch.allclose(fresh.model.state_dict()[name], weights[name], atol=1e-3)
    assert epochs == [1, 2]  # its own schedule from epoch 1, not the first run's epoch


def test_weights_of_another_network_are_refused_by_name(tmp_path):
    path = tmp_path / "vgg.safetensors"
    config = TrainConfig.model_validate({**TINY, "model": "vgg_small"})
    train(config, callbacks=[lambda r: r.save_checkpoint(path)])
    model = train(TrainConfig.model_validate({**TINY, "epochs": 1})).model
    with pytest.raises(ValueError, match=r"cannot start from these weights \(a vgg_small"):
        start_from_weights(model, path)
