"""One loader per split, whichever way the dataset is held (memory or streaming)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol

import torch
from torch import Tensor

from recu_core.data.base import ImageDataset
from recu_core.data.loader import DeviceLoader
from recu_core.data.streaming import StreamingDataset, StreamingLoader

SplitName = Literal["train", "val", "test"]
Dataset = ImageDataset | StreamingDataset


class Loader(Protocol):
    """Batches per epoch, and an epoch's ((B, C, H, W) float32, (B,) int64) batches."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]: ...


def has_split(dataset: Dataset, split: SplitName) -> bool:
    """Whether ``dataset`` has ``split`` (only the validation split is optional)."""
    if split != "val":
        return True
    held = dataset.val_images if isinstance(dataset, ImageDataset) else dataset.val
    return held is not None


def make_loader(
    dataset: Dataset,
    split: SplitName,
    *,
    batch_size: int,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> Loader:
    """The loader of ``split``: augmented and reshuffled per epoch for "train" only."""
    train = split == "train"
    common = {
        "batch_size": batch_size,
        "train": train,
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
        "device": device,
        "channels_last": channels_last,
    }
    if isinstance(dataset, StreamingDataset):
        files = {"train": dataset.train, "val": dataset.val, "test": dataset.test}[split]
        if files is None:
            raise ValueError(f"{dataset.name} has no {split} split")
        return StreamingLoader(dataset, files, **common)  # type: ignore[arg-type]
    images, labels = {
        "train": (dataset.train_images, dataset.train_labels),
        "val": (dataset.val_images, dataset.val_labels),
        "test": (dataset.test_images, dataset.test_labels),
    }[split]
    if images is None or labels is None:
        raise ValueError(f"{dataset.name} has no {split} split")
    return DeviceLoader(
        images,
        labels,
        mean=dataset.mean,
        std=dataset.std,
        crop_padding=dataset.crop_padding if train else 0,
        flip=dataset.flip and train,
        **common,  # type: ignore[arg-type]
    )
