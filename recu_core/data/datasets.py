"""``load_dataset``: a ``DatasetConfig`` in, an in-memory ``ImageDataset`` out.

Each source decodes to ``Splits``; this module resolves paths, takes the
configured subset, computes the normalisation statistics and fills in the
source's default augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from recu_core.config import DatasetConfig
from recu_core.data.base import DatasetError, ImageDataset, Splits, channel_stats
from recu_core.data.cifar import LAYOUTS, load_cifar
from recu_core.data.digits import load_digits_splits
from recu_core.data.imagefolder import LAYOUT, load_imagefolder
from recu_core.data.synthetic import synthetic_splits
from recu_core.settings import Settings, get_settings

SUBSET_SEED = 0


@dataclass(frozen=True)
class _Source:
    """How to decode one dataset and its default augmentation."""

    load: Callable[[DatasetConfig, Settings], Splits]
    crop_padding: Callable[[int], int]  # image size -> default random-crop padding
    flip: bool  # default random horizontal flip


def load_dataset(cfg: DatasetConfig, *, settings: Settings | None = None) -> ImageDataset:
    """Load (decoding once, then from the cache) the dataset ``cfg`` names."""
    settings = settings if settings is not None else get_settings()
    source = _SOURCES[cfg.name]
    splits = source.load(cfg, settings)
    train_images, train_labels = _first(splits.train_images, splits.train_labels, cfg.num_train)
    test_images, test_labels = _first(splits.test_images, splits.test_labels, cfg.num_test)
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


def _load_cifar(cfg: DatasetConfig, settings: Settings) -> Splits:
    root = resolve_root(cfg.root or LAYOUTS[cfg.name].folder, settings.data_dir)
    return load_cifar(cfg.name, root, settings.cache_dir)


def _load_imagefolder(cfg: DatasetConfig, settings: Settings) -> Splits:
    if cfg.root is None:
        raise DatasetError(
            f"imagefolder: dataset.root is required; point it at a folder laid out as {LAYOUT}"
        )
    root = resolve_root(cfg.root, settings.data_dir)
    return load_imagefolder(root, cfg.image_size, settings.cache_dir)


def _load_synthetic(cfg: DatasetConfig, settings: Settings) -> Splits:
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
