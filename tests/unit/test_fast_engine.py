"""The fast 1-bit engine against its definition, the reference engine and the float model.

Integer sums: every binary layer of every registered model, fed the activations it sees
on real images (digits, and real CIFAR-10 test images from the shared archive), gives the
same sum of +-1 products on both engines, bit for bit (zero padding included), and the
same float outputs once scaled. The kernel alone is checked against ``conv2d`` of the
sign tensors on awkward shapes: channel counts that are not a multiple of 64, stride 2,
1x1 and 3x3 kernels, odd sizes, -0.0. The fallback when Numba cannot run is checked in a
child process where importing numba fails.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recu_core.config import DatasetConfig, InferenceEngine, TrainConfig
from recu_core.data import load_dataset
from recu_core.export.bits import pack_bits
from recu_core.export.bnn_file import export_model, load_packed_model
from recu_core.export.engines import channel_packed_filters, fast_conv, fast_unavailable
from recu_core.export.packed_layers import PackedBinaryConv2d, PackedBinaryLinear
from recu_core.models import list_models
from tests.unit.test_export import _images, _random_model

MODELS = list_models()
pytestmark = pytest.mark.skipif(
    fast_unavailable() is not None, reason=f"fast engine unavailable: {fast_unavailable()}"
)


def _signs(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.signbit(x), -1.0, 1.0).to(x.dtype)


@pytest.mark.parametrize(
    ("channels", "outs", "size", "kernel", "stride", "padding"),
    [
        (3, 5, 7, 3, 1, 1),
        (64, 64, 8, 3, 1, 1),
        (70, 9, 9, 3, 2, 1),
        (130, 17, 5, 1, 1, 0),
        (200, 8, 6, 3, 2, 0),
    ],
)
def test_kernel_equals_conv2d_of_the_signs_with_zero_padding(
    channels, outs, size, kernel, stride, padding
):
    rng = np.random.default_rng(channels)
    x = torch.from_numpy(rng.standard_normal((3, channels, size, size)))
    x[0, 0, 0, :2] = torch.tensor([0.0, -0.0], dtype=torch.float64)  # -0.0 is -1
    w = rng.integers(0, 2, (outs, channels * kernel * kernel), dtype=np.uint8)
    filters = channel_packed_filters(pack_bits(w, axis=1), channels, (kernel, kernel))
    got = fast_conv(
        x, filters, np.ones(outs), np.zeros(outs), (stride, stride), (padding, padding), channels
    )
    weights = torch.from_numpy(1.0 - 2.0 * w.reshape(outs, channels, kernel, kernel))
    want = F.conv2d(_signs(x), weights, stride=stride, padding=padding)
    assert torch.equal(got, want)
    assert got.dtype == torch.float64


def _layer_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each packed binary layer receives when ``model`` runs on ``x``."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, a, n=name: seen.setdefault(n, a[0].clone()))
        for name, module in model.named_modules()
        if isinstance(module, PackedBinaryConv2d | PackedBinaryLinear)
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def _integer_sums(layer: nn.Module, x: torch.Tensor, engine: InferenceEngine) -> torch.Tensor:
    """The layer's sums of +-1 products (scale 1, bias 0, in float64: exact integers)."""
    scale, bias, before = layer.scale.clone(), layer.bias.clone(), layer.engine
    try:
        layer.scale.fill_(1.0)
        layer.bias.zero_()
        layer.engine = engine
        with torch.no_grad():
            return layer(x.double()).contiguous()
    finally:
        layer.scale.copy_(scale)
        layer.bias.copy_(bias)
        layer.engine = before


def _assert_engines_agree(name: str, x: torch.Tensor, in_channels: int, size: int) -> None:
    model = _random_model(name, in_channels, size, seed=7)
    shape = {"num_classes": 10, "in_channels": in_channels, "image_size": size}
    data = export_model(model, TrainConfig(model=name), shape)
    fast = load_packed_model(data, engine="fast")
    inputs = _layer_inputs(fast, x)
    assert inputs, f"{name} has no packed binary layer"
    for layer_name, seen in inputs.items():
        layer = fast.get_submodule(layer_name)
        sums = _integer_sums(layer, seen, InferenceEngine.FAST)
        reference = _integer_sums(layer, seen, InferenceEngine.REFERENCE)
        assert torch.equal(sums, reference), layer_name
        assert torch.equal(sums, sums.round()), layer_name
        with torch.no_grad():  # scaled, in float32: the same rounding on both engines
            out_fast = layer(seen)
            layer.engine = InferenceEngine.REFERENCE
            out_reference = layer(seen)
            layer.engine = InferenceEngine.FAST
        assert torch.equal(out_fast.contiguous(), out_reference.contiguous()), layer_name
        # ... and that rounding is once, from float64: the nearest float32 to the map
        per_channel = (1, -1) + (1,) * (sums.dim() - 2)
        nearest = sums * layer.scale.view(per_channel) + layer.bias.view(per_channel)
        assert torch.equal(out_reference.contiguous(), nearest.to(seen.dtype)), layer_name
    # The whole model in float64, against the reference engine (test_export compares both
    # engines with the float model; a float64 copy of the float model is not the
    # reference here: its weight standardisation can binarise a latent weight within
    # rounding of the mean differently from the float32 model that was exported).
    with torch.no_grad():
        expected = load_packed_model(data, engine="reference").double()(x.double())
        got = load_packed_model(data, engine="fast").double()(x.double())
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(expected.argmax(1), got.argmax(1))


@pytest.mark.parametrize("name", MODELS)
def test_fast_and_reference_sums_are_equal_on_digits(name):
    dataset = load_dataset(DatasetConfig(name="digits"))
    x = _images(dataset, 64)
    _assert_engines_agree(name, x, dataset.in_channels, dataset.image_size)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", MODELS)
def test_fast_and_reference_sums_are_equal_on_real_cifar10(name, cifar_test):
    _assert_engines_agree(name, _images(cifar_test, 16), 3, 32)


@pytest.fixture(scope="module")
def cifar_test(tmp_path_factory):
    from tests.unit.test_data_formats import SHARED_ARCHIVE, extract_subset

    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"shared CIFAR-10 archive not found at {SHARED_ARCHIVE}")
    root = tmp_path_factory.mktemp("cifar") / "cifar10"
    extract_subset(SHARED_ARCHIVE, root, per_class=2)
    return load_dataset(DatasetConfig(name="imagefolder", root=str(root)))


def test_a_binary_linear_layer_runs_on_both_engines_alike():
    rng = np.random.default_rng(5)
    layer = PackedBinaryLinear(100, 7)
    bits = pack_bits(rng.integers(0, 2, (7, 100), dtype=np.uint8), axis=1)
    layer.bits.copy_(torch.from_numpy(bits.view(np.int32)))
    layer.scale.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, 7)))
    layer.bias.copy_(torch.from_numpy(rng.standard_normal(7)))
    x = torch.randn(9, 100)
    reference = layer(x)
    layer.engine = InferenceEngine.FAST
    assert torch.equal(layer(x), reference)


def test_the_fast_engine_falls_back_to_the_reference_one_naming_the_reason():
    """A machine where numba cannot be imported: asked for fast, the model runs on the
    reference engine, and the warning says why."""
    code = (
        "import sys, warnings; sys.modules['numba'] = None\n"
        "from recu_core.export.engines import resolve, EngineFallbackWarning\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    print(resolve('fast'))\n"
        "print([str(w.message) for w in caught if w.category is EngineFallbackWarning])\n"
        "print(resolve('reference'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "reference"
    assert "fast 1-bit engine is not available (numba is not usable" in lines[1]
    assert lines[2] == "reference"
