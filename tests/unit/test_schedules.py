"""tau schedules and the lr schedule are pure functions with the documented endpoints."""

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from recu_core.config import TauSchedule, TrainConfig
from recu_core.schedules import epoch_lr, lr_at, tau_at

taus = st.floats(min_value=0.5001, max_value=0.9999)


@pytest.mark.parametrize("kind", ["exponential", "linear"])
@given(tau_s=taus, tau_e=taus, total=st.integers(1, 1000))
def test_endpoints_and_monotonic(kind, tau_s, tau_e, total):
    tau_s, tau_e = min(tau_s, tau_e), max(tau_s, tau_e)
    schedule = TauSchedule(kind=kind, tau_s=tau_s, tau_e=tau_e)
    assert tau_at(schedule, 0, total) == pytest.approx(tau_s, abs=1e-12)
    assert tau_at(schedule, total, total) == pytest.approx(tau_e, abs=1e-12)
    values = [tau_at(schedule, t, total) for t in range(total + 1)]
    assert all(b >= a - 1e-15 for a, b in itertools.pairwise(values))
    assert all(0.5 < v < 1 for v in values)


def test_exponential_matches_paper_formula():
    schedule = TauSchedule(kind="exponential", tau_s=0.85, tau_e=0.99)
    a = (0.99 - 0.85) / (math.e - 1)
    b = 0.85 - a
    for t in (0, 7, 123, 400):
        assert tau_at(schedule, t, 400) == pytest.approx(a * math.exp(t / 400) + b, abs=1e-15)
    # Exponential growth: most of the increase comes late.
    assert tau_at(schedule, 200, 400) < 0.5 * (0.85 + 0.99)


def test_constant_schedule():
    schedule = TauSchedule(kind="constant", tau_s=0.9, tau_e=0.9)
    assert {tau_at(schedule, t, 10) for t in range(11)} == {0.9}


@pytest.mark.parametrize(("field", "value"), [("tau_s", 0.5), ("tau_e", 1.0), ("tau_s", 1.2)])
def test_tau_outside_open_interval_is_rejected(field, value):
    with pytest.raises(ValidationError, match=field):
        TauSchedule(**{field: value})


def test_decreasing_schedule_is_rejected_with_both_values():
    with pytest.raises(ValidationError, match=r"tau_s \(0.99\) must not exceed tau_e \(0.85\)"):
        TauSchedule(kind="exponential", tau_s=0.99, tau_e=0.85)


def test_epoch_outside_range_is_an_error():
    with pytest.raises(ValueError, match=r"epoch must lie in \[0, 10\]"):
        tau_at(TauSchedule(), 11, 10)


def test_lr_warmup_then_cosine():
    assert lr_at(0, 100, 10, 0.1) == pytest.approx(0.01)
    assert lr_at(9, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(10, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(55, 100, 10, 0.1) == pytest.approx(0.05)
    assert lr_at(100, 100, 10, 0.1) == pytest.approx(0.0, abs=1e-12)
    lrs = [lr_at(s, 100, 10, 0.1) for s in range(10, 101)]
    assert all(b <= a for a, b in itertools.pairwise(lrs))
    assert lr_at(0, 100, 0, 0.1) == pytest.approx(0.1)


def _official_lrs(epochs: int, base: float, warm_up: bool) -> list[float]:
    """The lr of each epoch as the official ReCU loop sets it: warm-up by hand for the
    first 5 epochs, PyTorch's CosineAnnealingLR(T_max = E - 4 * warm_up) stepped after
    each epoch from epoch 4 * warm_up on (cifar/main.py, imagenet/main.py)."""
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [param], "initial_lr": base}], lr=base)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, epochs - warm_up * 4, eta_min=0, last_epoch=-1
    )
    lrs = []
    for epoch in range(epochs):
        if warm_up and epoch < 5:
            optimizer.param_groups[0]["lr"] = base * (epoch + 1) / 5
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if epoch >= 4 * warm_up:
            scheduler.step()
    return lrs


@pytest.mark.parametrize(("epochs", "warm_up"), [(600, True), (200, True), (12, True), (30, False)])
def test_epoch_lr_is_the_official_loop_with_pytorchs_scheduler(epochs, warm_up):
    official = _official_lrs(epochs, 0.1, warm_up)
    ours = [epoch_lr(e, epochs, 5 if warm_up else 0, 0.1) for e in range(epochs)]
    assert ours == pytest.approx(official, rel=1e-9, abs=1e-15)


def test_epoch_lr_rejects_a_warmup_as_long_as_the_run():
    with pytest.raises(ValueError, match=r"warm-up epochs must lie in \[0, 5\)"):
        epoch_lr(0, 5, 5, 0.1)


def test_default_warmup_is_whole_epochs_with_the_epoch_schedule():
    assert TrainConfig(epochs=600).warmup_epochs == 5.0
    assert TrainConfig(epochs=25).warmup_epochs == 2.0
    assert TrainConfig(epochs=25, optimizer={"lr_schedule": "step"}).warmup_epochs == 2.5
    with pytest.raises(ValidationError, match="whole number of epochs"):
        TrainConfig.model_validate({"epochs": 25, "optimizer": {"warmup_epochs": 2.5}})
