"""scikit-learn's bundled 8x8 handwritten digits: the embedded default, no download.

1,797 images with values 0..16, scaled to uint8 and split 80/20, stratified by
class with a fixed seed so every run sees the same split.
"""

from __future__ import annotations

import numpy as np
import torch

from recu_core.data.base import Splits


def load_digits_splits() -> Splits:
    """The digits as (N, 1, 8, 8) uint8: 1,437 train and 360 test images, 10 classes."""
    # Imported here: scikit-learn takes about a second to import and only this dataset needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)  # (N,)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0
    )
    return Splits(
        train_images=torch.from_numpy(np.ascontiguousarray(train_x)),
        train_labels=torch.from_numpy(np.ascontiguousarray(train_y)),
        test_images=torch.from_numpy(np.ascontiguousarray(test_x)),
        test_labels=torch.from_numpy(np.ascontiguousarray(test_y)),
        classes=tuple(str(name) for name in bunch.target_names),
    )
