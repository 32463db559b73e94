"""The dataset types shared by every format: the error, the decoded splits, the dataset.

Every format decodes once into ``Splits`` (uint8 images, int64 labels, class
names); ``load_dataset`` then subsets it and attaches the statistics and the
default augmentation, giving an ``ImageDataset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message names the path and the expected layout."""


@dataclass(frozen=True, eq=False)
class Splits:
    """Decoded train and test splits, before subsetting (what the disk cache stores)."""

    train_images: torch.Tensor  # (N, C, H, W) uint8
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor  # (M, C, H, W) uint8
    test_labels: torch.Tensor  # (M,) int64
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_split("train", self.train_images, self.train_labels, len(self.classes))
        _check_split("test", self.test_images, self.test_labels, len(self.classes))
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DatasetError(
                f"train images are {tuple(self.train_images.shape[1:])} but test images are "
                f"{tuple(self.test_images.shape[1:])} (C, H, W)"
            )


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """An image-classification dataset held in memory as uint8 tensors.

    ``eq=False``: tensors have no single truth value, so identity equality is the
    only sound default; compare the tensors themselves where needed.
    """

    name: str
    train_images: torch.Tensor  # (N, C, H, W) uint8, contiguous
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor  # (M, C, H, W) uint8
    test_labels: torch.Tensor  # (M,) int64
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, [0, 1] scale, from train_images
    std: tuple[float, ...]
    crop_padding: int  # random-crop zero padding of the default augmentation
    flip: bool  # random horizontal flip in the default augmentation
    val_images: torch.Tensor | None = None  # (V, C, H, W) uint8, carved from train
    val_labels: torch.Tensor | None = None  # (V,) int64
    loader: str = "memory"  # how the run is fed, and why (load_dataset's choice)

    def __post_init__(self) -> None:
        _check_split("train", self.train_images, self.train_labels, len(self.classes))
        _check_split("test", self.test_images, self.test_labels, len(self.classes))
        if (self.val_images is None) != (self.val_labels is None):
            raise DatasetError(f"{self.name}: val_images and val_labels go together")
        if self.val_images is not None and self.val_labels is not None:
            _check_split("val", self.val_images, self.val_labels, len(self.classes))
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise DatasetError(f"{self.name}: mean/std need one value per channel")

    @property
    def num_classes(self) -> int:
        """Number of classes (the classifier's output width)."""
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        """Image channels: 1 (grayscale) or 3 (RGB)."""
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the square images in pixels."""
        return int(self.train_images.shape[2])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 images on the [0, 1] scale.

    Counts the 256 values per channel instead of converting to float: exact, and
    memory stays at one channel's worth of uint8 (CIFAR's 150 M values in float64
    would take 1.2 GB).
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0  # (256,)
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).double()  # (256,)
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def validation_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train index, validation index): a seeded shuffle of range(n), the last
    round(fraction * n) positions (at least 1, leaving at least 1) held out."""
    held = min(max(1, round(fraction * n)), n - 1)
    if held < 1:
        raise DatasetError(f"a validation split needs at least 2 training images, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (n,)
    return order[: n - held].sort().values, order[n - held :].sort().values


def _check_split(split: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    """Shapes and dtypes every consumer relies on; cheap, so always checked."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise DatasetError(
            f"{split} images must be (N, C, H, W) uint8, got {tuple(images.shape)} {images.dtype}"
        )
    if images.shape[1] not in (1, 3):
        raise DatasetError(f"{split} images must have 1 or 3 channels, got {images.shape[1]}")
    if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise DatasetError(
            f"{split} labels must be ({images.shape[0]},) int64, "
            f"got {tuple(labels.shape)} {labels.dtype}"
        )
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise DatasetError(f"{split} labels must lie in [0, {num_classes})")
