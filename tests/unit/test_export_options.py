"""The ``.bnn`` export of the layer options: each exportable one runs exactly on both 1-bit
engines, and the one that cannot (real weights, stage 1) is refused with its reason.

As tests/unit/test_export.py: BatchNorm statistics and scales drawn at random (negative
scales included), and here the options' own parameters too (RSign thresholds, RPReLU
shifts and slopes, BiPer weights), so that nothing is compared at a neutral point; the
packed model is compared with the eval-mode float model on real digits images, logits to
1e-9 in float64 and the top-1 class on every image.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recu_core.activations import RPReLU
from recu_core.config import BinaryOptions, DatasetConfig, TrainConfig
from recu_core.data import load_dataset
from recu_core.export.bnn_file import (
    REAL_WEIGHTS_REFUSAL,
    export_model,
    load_packed_model,
    read_bnn,
)
from recu_core.layers import binary_layers, set_epoch_progress, set_tau
from recu_core.models import create_model, list_models
from tests.unit.test_export import _assert_same_predictions, _images

EXPORTABLE = {
    "biper": {"weight_binarizer": "biper"},
    "biper_standardised": {"weight_binarizer": "biper", "standardize": True, "clamp": True},
    "rsign": {"activation_threshold": "rsign"},
    "rprelu": {"activation": "rprelu"},
    "reste": {"activation_ste": "reste"},
    "ede": {"activation_ste": "ede"},
    "reactnet_biper": {
        "weight_binarizer": "biper",
        "activation_threshold": "rsign",
        "activation": "rprelu",
        "activation_ste": "reste",
    },
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetConfig(name="digits"))


def _random_model(name: str, options: dict, digits, seed: int) -> tuple[nn.Module, TrainConfig]:
    torch.manual_seed(seed)
    config = TrainConfig(model=name, binary_options=BinaryOptions(**options))
    model = create_model(
        name,
        num_classes=10,
        in_channels=digits.in_channels,
        image_size=digits.image_size,
        options=config.binary_options,
    )
    set_tau(model, 0.93)
    set_epoch_progress(model, 3, 10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                sign = torch.where(torch.rand_like(module.weight) < 0.2, -1.0, 1.0)
                module.weight.copy_(sign * (0.5 + torch.rand_like(module.weight)))
                module.bias.copy_(torch.randn_like(module.bias) * 0.5)
                module.running_mean.copy_(torch.randn_like(module.running_mean) * 0.5)
                module.running_var.copy_(0.5 + torch.rand_like(module.running_var))
            elif isinstance(module, RPReLU):
                module.gamma.copy_(torch.randn_like(module.gamma) * 0.3)
                module.slope.copy_(torch.randn_like(module.slope) * 0.5)
                module.zeta.copy_(torch.randn_like(module.zeta) * 0.3)
        for _, layer in binary_layers(model):
            if layer.threshold is not None:
                layer.threshold.copy_(torch.randn_like(layer.threshold) * 0.3)
    return model.eval(), config


def _shape(digits) -> dict[str, int]:
    return {"num_classes": 10, "in_channels": digits.in_channels, "image_size": digits.image_size}


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("option", sorted(EXPORTABLE))
def test_each_exportable_option_runs_exactly_on_both_engines(option, engine, digits):
    model, config = _random_model("resnet20", EXPORTABLE[option], digits, seed=3)
    packed = load_packed_model(export_model(model, config, _shape(digits)), engine=engine)
    _assert_same_predictions(model, packed, _images(digits, 120))


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_with_every_exportable_option_at_once(name, digits):
    model, config = _random_model(name, EXPORTABLE["reactnet_biper"], digits, seed=4)
    packed = load_packed_model(export_model(model, config, _shape(digits)), engine="fast")
    _assert_same_predictions(model, packed, _images(digits, 60))


def test_rsign_thresholds_are_stored_and_used_by_the_packed_layers(digits):
    model, config = _random_model("resnet20", EXPORTABLE["rsign"], digits, seed=5)
    data = export_model(model, config, _shape(digits))
    tensors, manifest = read_bnn(data)
    for name, layer in binary_layers(model):
        assert manifest["layers"][name]["threshold"] is True
        assert torch.equal(tensors[f"{name}.threshold"], layer.threshold.detach())
    packed = load_packed_model(data, engine="reference").double()
    x = _images(digits, 40).double()
    with torch.no_grad():
        shifted = packed(x)
        for module in packed.modules():
            if getattr(module, "threshold", None) is not None:
                module.threshold.zero_()
        assert not torch.allclose(shifted, packed(x))  # the thresholds change the bits


def test_options_without_thresholds_keep_the_layer_manifest_and_tensors_of_recu(digits):
    recu, recu_config = _random_model("resnet20", {}, digits, seed=6)
    _, manifest = read_bnn(export_model(recu, recu_config, _shape(digits)))
    assert all(spec["threshold"] is False for spec in manifest["layers"].values())
    tensors, _ = read_bnn(export_model(recu, recu_config, _shape(digits)))
    assert not any(key.endswith(".threshold") for key in tensors)


@pytest.mark.parametrize("binarizer", ["recu", "biper"])
def test_real_weights_are_refused_naming_the_option(binarizer, digits):
    options = {"weights": "real", "weight_binarizer": binarizer}
    model, config = _random_model("resnet20", options, digits, seed=7)
    with pytest.raises(ValueError, match="stage-1 models have real weights") as info:
        export_model(model, config, _shape(digits))
    message = str(info.value)
    assert message.startswith(REAL_WEIGHTS_REFUSAL)
    assert "stage-1 models have real weights: export the stage-2 job" in message
    assert "binary_options.weights='real'" in message
