"""Every registered model, binary and full precision: shapes, gradients, no host syncs."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from recu_core.config import MODEL_NAMES, BinaryOptions
from recu_core.layers import BinaryConv2d, binary_layers, set_tau
from recu_core.models import create_model, list_models

# Small inputs keep the suite fast: CIFAR models on digits-sized images,
# ImageNet models on 32x32.
INPUTS = {
    "resnet20": (1, 8),
    "resnet18": (1, 8),
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


class _FailOnHostSync(TorchDispatchMode):
    """Raises on aten._local_scalar_dense: what .item(), bool(t) and .tolist() dispatch to."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("host synchronisation (aten._local_scalar_dense) in a train step")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_train_step_has_no_host_sync(name):
    model, x = _build(name, True)
    set_tau(model, 0.9)
    model.train()
    with _FailOnHostSync():
        loss = model(x).logsumexp(1).mean()
        loss.backward()


def test_host_sync_detector_detects_item():
    with pytest.raises(AssertionError, match="_local_scalar_dense"), _FailOnHostSync():
        torch.ones(2).sum().item()


@pytest.mark.parametrize("name", sorted(INPUTS))
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
