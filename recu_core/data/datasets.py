"""``load_dataset``: a ``DatasetConfig`` in, an ``ImageDataset`` (in memory) or a
``StreamingDataset`` (an image folder read batch by batch) out.

Each in-memory source decodes to ``Splits``; this module resolves paths, takes the
configured subset, carves the validation split, computes the normalisation statistics
and fills in the source's default augmentation. An image folder streams when
``dataset.loader`` says so, or ('auto') when its decoded images would not fit in
``DataSettings.memory_loader_max_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from recu_core.config import DatasetConfig
from recu_core.data.base import (
    DatasetError,
    ImageDataset,
    Splits,
    channel_stats,
    validation_split,
)
from recu_core.data.cifar import LAYOUTS, load_cifar
from recu_core.data.digits import load_digits_splits
from recu_core.data.imagefolder import LAYOUT, load_imagefolder, scan
from recu_core.data.stream_source import decoded_bytes, open_streaming
from recu_core.data.streaming import StreamingDataset
from recu_core.data.synthetic import synthetic_splits
from recu_core.settings import DataSettings

SUBSET_SEED = 0


@dataclass(frozen=True)
class _Source:
    """How to decode one dataset and its default augmentation."""

    load: Callable[[DatasetConfig, DataSettings], Splits]
    crop_padding: Callable[[int], int]  # image size -> default random-crop padding
    flip: bool  # default random horizontal flip


def load_dataset(
    cfg: DatasetConfig, *, settings: DataSettings | None = None
) -> ImageDataset | StreamingDataset:
    """Load the dataset ``cfg`` names: in memory (decoded once, then from the cache), or
    as a streaming image folder; ``.loader`` on the result says which, and why."""
    settings = settings if settings is not None else DataSettings()
    if cfg.name != "imagefolder":
        if cfg.loader == "streaming":
            raise DatasetError(
                f"dataset.loader 'streaming' reads image folders only, not {cfg.name!r}; "
                "use loader 'auto' or 'memory'"
            )
        return load_in_memory(cfg, settings, f"memory ({cfg.name} is held in memory)")
    root = _imagefolder_root(cfg, settings)
    if cfg.loader == "memory":
        return load_in_memory(cfg, settings, "memory (dataset.loader)")
    if cfg.loader == "streaming":
        return open_streaming(cfg, scan(root, with_listing=False), "streaming (dataset.loader)")
    if cfg.image_size is None:  # streaming crops to image_size: without one, memory
        return load_in_memory(cfg, settings, "memory (no dataset.image_size to stream at)")
    layout = scan(root, with_listing=False)
    need, limit = decoded_bytes(layout, cfg.image_size), settings.memory_loader_max_bytes
    sizes = f"decoded size {need / 2**30:.2f} GiB, limit {limit / 2**30:.2f} GiB"
    if need > limit:
        return open_streaming(cfg, layout, f"streaming (auto: {sizes})")
    return load_in_memory(cfg, settings, f"memory (auto: {sizes})")


def load_in_memory(cfg: DatasetConfig, settings: DataSettings, loader: str) -> ImageDataset:
    """The dataset decoded into uint8 tensors (cached on disk after the first decode)."""
    source = _SOURCES[cfg.name]
    splits = source.load(cfg, settings)
    train_images, train_labels = _first(splits.train_images, splits.train_labels, cfg.num_train)
    test_images, test_labels = _first(splits.test_images, splits.test_labels, cfg.num_test)
    val_images = val_labels = None
    if cfg.val_fraction is not None:
        train_index, val_index = validation_split(
            train_labels.shape[0], cfg.val_fraction, cfg.split_seed
        )
        val_images, val_labels = train_images[val_index], train_labels[val_index]
        train_images, train_labels = train_images[train_index], train_labels[train_index]
    mean, std = channel_stats(train_images)
    image_size = int(train_images.shape[2])
    return ImageDataset(
        name=cfg.name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=splits.classes,
        mean=mean,
        std=std,
        crop_padding=(
            cfg.crop_padding if cfg.crop_padding is not None else source.crop_padding(image_size)
        ),
        flip=cfg.flip if cfg.flip is not None else source.flip,
        val_images=val_images,
        val_labels=val_labels,
        loader=loader,
    )


def resolve_root(root: str, data_dir: Path) -> Path:
    """``root`` as an absolute path; a relative one is taken under ``data_dir``."""
    path = Path(root).expanduser()
    if not path.is_absolute():
        path = data_dir.expanduser() / path
    return path.resolve()


def _first(
    images: torch.Tensor, labels: torch.Tensor, n: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of a fixed shuffle (seed 0), so a subset keeps classes mixed."""
    if n is None or n >= labels.shape[0]:
        return images.contiguous(), labels
    gen = torch.Generator().manual_seed(SUBSET_SEED)
    index = torch.randperm(labels.shape[0], generator=gen)[:n]  # (n,)
    return images[index].contiguous(), labels[index]  # (n, C, H, W), (n,)


def _load_cifar(cfg: DatasetConfig, settings: DataSettings) -> Splits:
    root = resolve_root(cfg.root or LAYOUTS[cfg.name].folder, settings.data_dir)
    return load_cifar(cfg.name, root, settings.cache_dir)


def _imagefolder_root(cfg: DatasetConfig, settings: DataSettings) -> Path:
    if cfg.root is None:
        raise DatasetError(
            f"imagefolder: dataset.root is required; point it at a folder laid out as {LAYOUT}"
        )
    return resolve_root(cfg.root, settings.data_dir)


def _load_imagefolder(cfg: DatasetConfig, settings: DataSettings) -> Splits:
    return load_imagefolder(_imagefolder_root(cfg, settings), cfg.image_size, settings.cache_dir)


def _load_synthetic(cfg: DatasetConfig, settings: DataSettings) -> Splits:
    return synthetic_splits(cfg.num_train or 5000, cfg.num_test or 1000, cfg.image_size or 32)


_SOURCES: dict[str, _Source] = {
    # Digits: no augmentation by default. A 1-pixel shift is 1/8 of the image and measurably
    # hurts (ReCU ResNet-20, 30 epochs: 93.6% with crop padding 1, 97.8% without); a flip
    # changes a digit's meaning.
    "digits": _Source(lambda cfg, settings: load_digits_splits(), lambda size: 0, flip=False),
    "cifar10": _Source(_load_cifar, lambda size: 4, flip=True),
    "cifar100": _Source(_load_cifar, lambda size: 4, flip=True),
    "imagefolder": _Source(_load_imagefolder, lambda size: size // 8, flip=True),
    "synthetic": _Source(_load_synthetic, lambda size: 4, flip=True),
}
