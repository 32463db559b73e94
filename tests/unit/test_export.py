"""Bit-packed export: the packed engine computes what the float model computes.

Every registered binary model, with BatchNorm statistics and scales drawn at random
(negative scales included, so the max-pool case that cannot fold is exercised), is
exported, loaded back from bytes and run by each 1-bit engine (fast and reference) on real
images:
digits, and real CIFAR-10 test images from the shared archive. Floats are compared to
the eval-mode float model. Two float evaluation orders can disagree on the sign of an
activation within ~1e-6 of zero, so the exact comparison (logits to 1e-9, top-1 on
every image) is made in float64, where the packed path and the float model differ only by
rounding; float32 is checked too, on almost every image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from recu_core.config import DatasetConfig, TrainConfig
from recu_core.data import load_dataset
from recu_core.export.bits import pack_bits, unpack_bits, xnor_dot
from recu_core.export.bnn_file import export_checkpoint, export_model, load_packed_model, read_bnn
from recu_core.layers import binary_layers, set_tau
from recu_core.models import create_model, list_models
from tests.unit.test_data_formats import SHARED_ARCHIVE, extract_subset

MODELS = list_models()


def test_pack_unpack_round_trip_and_layout():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(5, 77), dtype=np.uint8)
    words = pack_bits(bits, axis=1)
    assert words.shape == (5, 3)
    assert np.array_equal(unpack_bits(words, 77, axis=1), bits)
    single = np.zeros(40, np.uint8)
    single[33] = 1  # element 33 is bit 1 of word 1
    assert pack_bits(single).tolist() == [0, 2]


def test_xnor_popcount_dot_equals_the_float_dot_with_padding_masked():
    rng = np.random.default_rng(1)
    a = rng.choice([-1.0, 1.0], size=(3, 70, 6))  # (B, K, L)
    w = rng.choice([-1.0, 1.0], size=(4, 70))  # (O, K)
    valid = rng.integers(0, 2, size=(70, 6)).astype(np.uint8)  # 0 = padding
    expected = np.einsum("bkl,ok,kl->bol", a, w, valid)
    got = xnor_dot(
        pack_bits((a < 0).astype(np.uint8), axis=1),
        pack_bits((w < 0).astype(np.uint8), axis=1),
        pack_bits(valid, axis=0),
        valid.sum(axis=0, dtype=np.int32),
    )
    assert np.array_equal(got, expected.astype(np.int32))


def _random_model(name: str, in_channels: int, image_size: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    config = TrainConfig(model=name)
    model = create_model(
        name,
        num_classes=10,
        in_channels=in_channels,
        image_size=image_size,
        binary=True,
        options=config.binary_options,
    )
    set_tau(model, 0.93)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                sign = torch.where(torch.rand_like(module.weight) < 0.2, -1.0, 1.0)
                module.weight.copy_(sign * (0.5 + torch.rand_like(module.weight)))
                module.bias.copy_(torch.randn_like(module.bias) * 0.5)
                module.running_mean.copy_(torch.randn_like(module.running_mean) * 0.5)
                module.running_var.copy_(0.5 + torch.rand_like(module.running_var))
    return model.eval()


def _assert_same_predictions(model: nn.Module, packed: nn.Module, x: torch.Tensor) -> None:
    """In float64 both paths agree to rounding (1e-9 here), top-1 on every image. In
    float32 an activation within ~1e-6 of zero can take either sign depending on the
    order of the float sums, so float32 is only required to agree on almost every image."""
    with torch.no_grad():
        expected, got = model.double()(x.double()), packed.double()(x.double())
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
        assert torch.equal(expected.argmax(1), got.argmax(1))
        expected32, got32 = model.float()(x), packed.float()(x)
    agree = (expected32.argmax(1) == got32.argmax(1)).float().mean().item()
    assert agree >= 0.98


def _images(dataset, count: int) -> torch.Tensor:
    x = dataset.test_images[:count].float() / 255.0
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)
    return (x - mean) / std


ENGINES = ["fast", "reference"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", MODELS)
def test_packed_engine_matches_the_float_model_on_digits(name, engine):
    dataset = load_dataset(DatasetConfig(name="digits"))
    model = _random_model(name, dataset.in_channels, dataset.image_size, seed=3)
    shape = {
        "num_classes": 10,
        "in_channels": dataset.in_channels,
        "image_size": dataset.image_size,
    }
    data = export_model(model, TrainConfig(model=name), shape)
    packed = load_packed_model(data, engine=engine)
    _assert_same_predictions(model, packed, _images(dataset, 120))


@pytest.fixture(scope="module")
def cifar_test(tmp_path_factory):
    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"shared CIFAR-10 archive not found at {SHARED_ARCHIVE}")
    root = tmp_path_factory.mktemp("cifar") / "cifar10"
    extract_subset(SHARED_ARCHIVE, root, per_class=10)
    return load_dataset(DatasetConfig(name="imagefolder", root=str(root)))


@pytest.mark.shared_data
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", MODELS)
def test_packed_engine_matches_the_float_model_on_real_cifar10(name, engine, cifar_test):
    model = _random_model(name, 3, 32, seed=4)
    shape = {"num_classes": 10, "in_channels": 3, "image_size": 32}
    data = export_model(model, TrainConfig(model=name), shape)
    packed = load_packed_model(data, engine=engine)
    _assert_same_predictions(model, packed, _images(cifar_test, 30))


def test_batchnorm_folds_where_exact_and_stays_where_not():
    model = _random_model("vgg_small", 3, 32, seed=5)
    _, manifest = read_bnn(
        export_model(
            model,
            TrainConfig(model="vgg_small"),
            {"num_classes": 10, "in_channels": 3, "image_size": 32},
        )
    )
    layers = manifest["layers"]
    assert len(layers) == len(binary_layers(model)) == 5
    # conv -> BN folds always; conv -> max-pool -> BN only when every folded scale > 0
    assert layers["features.7"]["folded_batchnorm"] == "features.8"
    unfolded = [n for n, spec in layers.items() if spec["folded_batchnorm"] is None]
    assert unfolded, "random negative BN scales should keep some pooled layers unfolded"
    assert manifest["bit_layout"]["word_bits"] == 32


def test_a_trained_checkpoint_exports_to_a_file_that_evaluates_the_same(trained_checkpoint):
    from recu_core.checkpoint import load_checkpoint, sha256_file
    from recu_core.train import evaluate_accuracy, load_trained_model

    path = trained_checkpoint
    config = TrainConfig.model_validate(load_checkpoint(path).manifest["config"])
    sha = sha256_file(path)
    data = export_checkpoint(path, expected_sha256=sha)
    _, manifest = read_bnn(data)
    assert manifest["source_sha256"] == sha
    dataset = load_dataset(config.dataset)
    float_model = load_trained_model(path)
    float_acc = evaluate_accuracy(float_model, dataset, device="cpu")
    x = _images(dataset, len(dataset.test_labels))  # the whole test split, in float32
    for engine in ENGINES:
        packed_model = load_packed_model(data, engine=engine)
        assert evaluate_accuracy(packed_model, dataset, device="cpu") == float_acc
        with torch.no_grad():
            assert torch.equal(float_model(x).argmax(1), packed_model(x).argmax(1))
    with pytest.raises(ValueError, match="expected"):
        export_checkpoint(path, expected_sha256="0" * 64)
    with pytest.raises(ValueError, match=r"not a \.bnn file"):
        read_bnn(Path(path).read_bytes())
