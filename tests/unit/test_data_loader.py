"""DeviceLoader: determinism per (seed, epoch), coverage, crops, flips, normalisation, no syncs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from recu_core.data import DeviceLoader

IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1 / 255, 1 / 255, 1 / 255)}  # output = raw pixels


def random_images(n: int, c: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=gen, dtype=torch.uint8)


def indexed_loader(n: int, **kwargs: Any) -> tuple[torch.Tensor, DeviceLoader]:
    """A loader whose label is each sample's index, so a batch says where its images came from."""
    images = random_images(n)
    options = {"batch_size": 16, "train": True, **IDENTITY, **kwargs}
    return images, DeviceLoader(images, torch.arange(n), **options)


def pixels(x: torch.Tensor) -> torch.Tensor:
    """Undo the IDENTITY normalisation: float batch -> uint8 pixels."""
    return x.round().to(torch.uint8)


def test_same_seed_and_epoch_give_identical_batches() -> None:
    _, a = indexed_loader(64, crop_padding=2, flip=True, seed=3)
    _, b = indexed_loader(64, crop_padding=2, flip=True, seed=3)
    first = list(a.epoch(5))
    list(b.epoch(0))  # a resumed run has not seen the earlier epochs: order must not matter
    for (xa, ya), (xb, yb) in zip(first, b.epoch(5), strict=True):
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)
    other_epoch = torch.cat([y for _, y in a.epoch(6)])
    assert not torch.equal(torch.cat([y for _, y in first]), other_epoch)
    _, c = indexed_loader(64, crop_padding=2, flip=True, seed=4)
    assert not torch.equal(torch.cat([y for _, y in c.epoch(5)]), torch.cat([y for _, y in first]))


def test_every_sample_appears_once_per_train_epoch() -> None:
    images, loader = indexed_loader(96)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 6
    labels = torch.cat([y for _, y in batches])
    assert sorted(labels.tolist()) == list(range(96))
    assert labels.tolist() != list(range(96))  # shuffled
    for x, y in batches:
        assert x.shape == (16, 3, 8, 8)
        assert x.dtype == torch.float32
        assert y.dtype == torch.int64
        assert torch.equal(pixels(x), images[y])  # images travel with their labels


def test_train_drops_the_last_partial_batch_unless_there_is_no_full_one() -> None:
    _, loader = indexed_loader(40)
    assert len(loader) == 2
    assert [y.numel() for _, y in loader.epoch(0)] == [16, 16]
    _, small = indexed_loader(5)
    assert len(small) == 1
    (batch,) = small.epoch(0)
    assert sorted(batch[1].tolist()) == list(range(5))


def test_crops_are_translations_of_the_zero_padded_image() -> None:
    p = 3
    images, loader = indexed_loader(256, crop_padding=p)
    padded = F.pad(images, (p, p, p, p))  # (N, C, 14, 14)
    offsets = set()
    for x, y in loader.epoch(0):
        for out, index in zip(pixels(x), y.tolist(), strict=True):
            matches = [
                (dy, dx)
                for dy in range(2 * p + 1)
                for dx in range(2 * p + 1)
                if torch.equal(out, padded[index, :, dy : dy + 8, dx : dx + 8])
            ]
            assert len(matches) == 1, f"sample {index} is not a crop of its padded image"
            offsets.add(matches[0])
    assert len(offsets) >= 40  # offsets are drawn per sample over all 49 positions


def test_about_half_the_samples_are_flipped() -> None:
    images, loader = indexed_loader(2048, flip=True, batch_size=256)
    flipped = 0
    for x, y in loader.epoch(0):
        out, source = pixels(x), images[y]
        is_flipped = (out == source.flip(3)).flatten(1).all(1)
        is_same = (out == source).flatten(1).all(1)
        assert torch.all(is_flipped ^ is_same)
        flipped += int(is_flipped.sum())
    assert 0.45 < flipped / 2048 < 0.55


def test_normalisation_uses_mean_and_std_per_channel() -> None:
    images = random_images(10)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    loader = DeviceLoader(images, torch.zeros(10), batch_size=10, mean=mean, std=std, train=False)
    (x, _), *_ = loader.epoch(0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - m) / s)


def test_test_loader_is_ordered_and_keeps_the_partial_batch() -> None:
    images, loader = indexed_loader(10, batch_size=4, train=False, crop_padding=4, flip=True)
    assert len(loader) == 3
    for epoch in (0, 1):
        batches = list(loader.epoch(epoch))
        assert [y.tolist() for _, y in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert torch.equal(pixels(torch.cat([x for x, _ in batches])), images)  # no augmentation


def test_channels_last_output() -> None:
    _, loader = indexed_loader(32, channels_last=True, crop_padding=1, flip=True)
    for x, _ in loader.epoch(0):
        assert x.is_contiguous(memory_format=torch.channels_last)


def test_uint8_images_stay_uint8_on_the_device() -> None:
    images = random_images(8)
    loader = DeviceLoader(
        images,
        torch.zeros(8),
        batch_size=4,
        mean=(0.5,) * 3,
        std=(0.2,) * 3,
        train=True,
        device="cpu",
    )
    assert loader.images.dtype == torch.uint8
    assert loader.images.device == torch.device("cpu")


class _RecordOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_an_epoch_never_reads_a_device_value_on_the_host() -> None:
    _, loader = indexed_loader(64, crop_padding=2, flip=True)
    with _RecordOps() as recorder:
        batches = list(loader.epoch(0))
    assert len(batches) == 4
    assert any("randperm" in op for op in recorder.ops)  # the mode did see the epoch's ops
    assert not any("_local_scalar_dense" in op for op in recorder.ops)
    with _RecordOps() as check:
        batches[0][1].sum().item()
    assert any("_local_scalar_dense" in op for op in check.ops)  # and would see a sync


@pytest.mark.parametrize(
    "kwargs",
    [{"mean": (0.5,), "std": (0.2,) * 3}, {"batch_size": 0}, {"crop_padding": -1}],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {"batch_size": 4, "train": True, **IDENTITY, **kwargs}
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by argument
        DeviceLoader(random_images(4), torch.zeros(4), **options)
