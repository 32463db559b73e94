"""Every registered model, binary and full precision: shapes, gradients, no host syncs."""

import pytest
import torch

from recu_core.config import MODEL_NAMES, BinaryOptions
from recu_core.layers import BinaryConv2d, binary_layers, set_tau
from recu_core.models import create_model, list_models
from tests.helpers import HostSyncs

# Small inputs keep the suite fast: CIFAR models on digits-sized images,
# ImageNet models on 32x32.
INPUTS = {
    "resnet20": (1, 8),
    "resnet18": (1, 8),
    "resnet18_bireal": (1, 8),
    "vgg_small": (1, 8),
    "resnet18_imagenet": (3, 32),
    "resnet34_imagenet": (3, 32),
}


def _build(name, binary, options=None):
    channels, size = INPUTS[name]
    torch.manual_seed(0)
    model = create_model(
        name, num_classes=7, in_channels=channels, image_size=size, binary=binary, options=options
    )
    return model, torch.randn(4, channels, size, size)


def test_registry_matches_config_names():
    assert set(list_models()) == set(MODEL_NAMES) == set(INPUTS)


def test_unknown_model_names_allowed_values():
    with pytest.raises(ValueError, match=r"unknown model 'resnet50'.*resnet20"):
        create_model("resnet50", num_classes=10, in_channels=3, image_size=32)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "fp"])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_model_backward(name, binary):
    model, x = _build(name, binary)
    out = model(x)
    assert out.shape == (4, 7)
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} has no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    layers = binary_layers(model)
    assert bool(layers) is binary


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_first_and_last_layers_stay_full_precision(name):
    model, _ = _build(name, True)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert not isinstance(convs[0], BinaryConv2d)
    assert type(list(model.modules())[-1]) is torch.nn.Linear


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_train_step_has_no_host_sync(name):
    model, x = _build(name, True)
    set_tau(model, 0.9)
    model.train()
    with HostSyncs(fail=True):  # tests/helpers.py: raises at the first host sync
        loss = model(x).logsumexp(1).mean()
        loss.backward()


@pytest.mark.parametrize(
    "syncing",
    [
        lambda t: t.sum().item(),
        lambda t: bool(t.sum() > 0),
        lambda t: t[t > 0],
        lambda t: t.nonzero(),
        lambda t: t + torch.tensor([1.0, 2.0]),
        lambda t: t.sum().tolist(),
        lambda t: t.cpu(),
        lambda t: t.numpy(),
    ],
    ids=["item", "bool", "mask-index", "nonzero", "torch.tensor", "tolist", "cpu", "numpy"],
)
def test_host_sync_detector_detects(syncing):
    with pytest.raises(AssertionError, match="host synchronisation"), HostSyncs(fail=True):
        syncing(torch.ones(2))
    assert torch.ones(2).tolist() == [1.0, 1.0]  # outside the detector nothing is detected


@pytest.mark.parametrize(("name", "size"), [("resnet20", 30), ("resnet18", 28), ("vgg_small", 12)])
def test_cifar_models_accept_odd_feature_map_sizes(name, size):
    model = create_model(name, num_classes=3, in_channels=3, image_size=size)
    assert model(torch.randn(2, 3, size, size)).shape == (2, 3)


# resnet34_imagenet is resnet18_imagenet's blocks in a longer stack: tracing it again (20 s
# on 2 cores) would check no code the other traces leave out.
@pytest.mark.parametrize("name", sorted(set(INPUTS) - {"resnet34_imagenet"}))
def test_model_traces_fullgraph(name):
    # fullgraph=True fails on any graph break (a .item(), data-dependent control flow).
    # aot_eager traces forward and backward graphs without slow C++ code generation.
    model, x = _build(name, True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()


def test_ablation_options_reach_every_binary_layer():
    options = BinaryOptions(clamp=False, activation_ste="clipped", alpha="none")
    model, _ = _build("resnet20", True, options)
    layers = binary_layers(model)
    assert len(layers) == 18
    assert all(layer.options == options and layer.alpha is None for _, layer in layers)
