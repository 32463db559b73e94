"""Deterministic random images for benchmarks: no files, same tensors in every process."""

from __future__ import annotations

import torch

from recu_core.data.base import Splits

NUM_CLASSES = 10
CHANNELS = 3


def synthetic_splits(num_train: int, num_test: int, image_size: int) -> Splits:
    """Uniform random uint8 images and uniform labels from a generator seeded 0."""
    gen = torch.Generator().manual_seed(0)
    shape = (CHANNELS, image_size, image_size)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randint(
            0, 256, (n, *shape), generator=gen, dtype=torch.uint8
        )  # (n, C, S, S)
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)  # (n,) int64
        return images, labels

    train_images, train_labels = draw(num_train)
    test_images, test_labels = draw(num_test)
    return Splits(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=tuple(f"class_{i}" for i in range(NUM_CLASSES)),
    )
