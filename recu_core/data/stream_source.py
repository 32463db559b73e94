"""Opening an image folder for the streaming loader: the file lists, splits and statistics.

Nothing is decoded up front but a seeded sample of ``STATS_SAMPLE`` training images, from
which the per-channel mean and std are estimated (exact statistics would decode the
whole folder once: 1.28M images for ImageNet).
"""

from __future__ import annotations

import numpy as np

from recu_core.config import DatasetConfig
from recu_core.data.base import DatasetError, validation_split
from recu_core.data.imagefolder import FolderLayout, FolderSplit, _parallel_map
from recu_core.data.streaming import (
    FileSplit,
    PathTable,
    StreamingDataset,
    decode_rgb,
    eval_view,
)

STATS_SAMPLE = 512
_SUBSET_SEED = 0  # the same fixed shuffle as the in-memory subsets


def decoded_bytes(layout: FolderLayout, image_size: int) -> int:
    """What the in-memory loader would hold: every image as (3, S, S) uint8."""
    return (len(layout.train.files) + len(layout.test.files)) * 3 * image_size * image_size


def open_streaming(cfg: DatasetConfig, layout: FolderLayout, loader: str) -> StreamingDataset:
    """The StreamingDataset of the scanned folder ``layout`` as ``cfg`` configures it."""
    if cfg.image_size is None:
        raise DatasetError(
            "imagefolder: dataset.image_size is required by the streaming loader (the crop "
            "size; 224 for ImageNet)"
        )
    train = _first(_split(layout.train), cfg.num_train)
    test = _first(_split(layout.test), cfg.num_test)
    val = None
    if cfg.val_fraction is not None:
        train_index, val_index = validation_split(len(train), cfg.val_fraction, cfg.split_seed)
        train, val = train.subset(train_index.numpy()), train.subset(val_index.numpy())
    mean, std = _sample_stats(train, cfg.image_size)
    return StreamingDataset(
        name=cfg.name,
        train=train,
        test=test,
        val=val,
        classes=layout.classes,
        image_size=cfg.image_size,
        mean=mean,
        std=std,
        crop_scale=cfg.crop_scale,
        flip=cfg.flip if cfg.flip is not None else True,
        workers=cfg.workers,
        loader=loader,
    )


def _split(split: FolderSplit) -> FileSplit:
    return FileSplit(PathTable(split.files), np.asarray(split.labels, dtype=np.int64))


def _first(split: FileSplit, n: int | None) -> FileSplit:
    """The first ``n`` files of a fixed shuffle (seed 0), as the in-memory subsets."""
    if n is None or n >= len(split):
        return split
    index = np.random.default_rng(_SUBSET_SEED).permutation(len(split))[:n]
    return split.subset(np.sort(index))


def _sample_stats(split: FileSplit, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the [0, 1] scale of a seeded sample's evaluation views."""
    count = min(STATS_SAMPLE, len(split))
    index = np.random.default_rng(_SUBSET_SEED).choice(len(split), count, replace=False)

    def moments(i: int) -> np.ndarray:  # (2, 3): per-channel sum and sum of squares
        pixels = eval_view(decode_rgb(split.files[int(i)]), size).reshape(-1, 3) / 255.0
        return np.stack([pixels.sum(0), np.square(pixels).sum(0)])

    total = np.sum(_parallel_map(moments, list(index)), axis=0)  # (2, 3)
    n = count * size * size
    mean = total[0] / n
    std = np.sqrt(np.maximum(total[1] / n - mean**2, 1e-6))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
