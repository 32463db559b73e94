"""The run configuration rejects bad input with messages naming the field and the allowed values."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from recu_core.config import TrainConfig


@pytest.mark.parametrize(
    ("payload", "field", "hint"),
    [
        ({"model": "resnet50"}, "model", "'resnet20'"),
        ({"dataset": {"name": "mnist"}}, "dataset.name", "'digits'"),
        ({"epochs": 0}, "epochs", "greater than or equal to 1"),
        ({"tau": {"tau_s": 0.5}}, "tau.tau_s", "greater than 0.5"),
        ({"tau": {"tau_e": 1.0}}, "tau.tau_e", "less than 1"),
        (
            {"binary_options": {"activation_ste": "tanh"}},
            "binary_options.activation_ste",
            "'approx_sign'",
        ),
        ({"optimizer": {"name": "lamb"}}, "optimizer.name", "'sgd'"),
        ({"batch_size": -1}, "batch_size", "greater than or equal to 1"),
        ({"learning_rate": 0.1}, "learning_rate", "Extra inputs are not permitted"),
        ({"device": "tpu"}, "device", "pattern"),
    ],
)
def test_bad_field_is_named_with_allowed_values(payload, field, hint):
    with pytest.raises(ValidationError) as info:
        TrainConfig.model_validate(payload)
    errors = info.value.errors()
    assert any(".".join(map(str, e["loc"])) == field for e in errors), errors
    assert hint in str(info.value)


def test_warmup_default_scales_with_short_runs():
    assert TrainConfig(epochs=600).warmup_epochs == 5.0
    assert TrainConfig(epochs=20).warmup_epochs == 2.0
    assert TrainConfig(epochs=9).warmup_epochs == 0.0  # whole epochs: a tenth of 9 is none
    with pytest.raises(ValidationError, match=r"warmup_epochs \(5.0\) must be smaller than epochs"):
        TrainConfig.model_validate({"epochs": 5, "optimizer": {"warmup_epochs": 5}})


def test_config_round_trips_through_json():
    config = TrainConfig.model_validate(
        {"model": "vgg_small", "tau": {"kind": "linear", "tau_s": 0.9, "tau_e": 0.95}}
    )
    assert TrainConfig.model_validate_json(config.model_dump_json()) == config


def test_config_module_does_not_import_torch():
    # The service validates job specs with this schema and must never import torch.
    code = "import sys, recu_core.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
