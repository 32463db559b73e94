"""CIFAR-10 and CIFAR-100 from the canonical python-pickle batches (the folders torchvision reads).

The batch files are pickles. A pickle can name any importable callable and run
it, so they are read with an unpickler that resolves only the few numpy globals
an array needs; anything else raises ``DatasetError`` before it is called.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recu_core.data.base import DatasetError, Splits
from recu_core.data.cache import SourceFile, cache_key, cached_splits

_SIDE = 32
_PIXELS = 3 * _SIDE * _SIDE  # one row of b"data": R plane, then G, then B, each row-major


@dataclass(frozen=True)
class CifarLayout:
    """File names and keys of one CIFAR variant."""

    folder: str  # default folder name under the data directory
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes
    names_key: bytes
    expected: str  # the layout, as error messages describe it


LAYOUTS = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        expected="the python-pickle batches data_batch_1..5 and test_batch "
        "(the folder torchvision's CIFAR10 uses)",
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        expected="the python-pickle files train, test and meta "
        "(the folder torchvision's CIFAR100 uses)",
    ),
}


def load_cifar(name: str, root: Path, cache_dir: Path) -> Splits:
    """Decode ``root`` once into the cache, then read it from there."""
    files = source_files(name, root)
    key = cache_key(root, None, files)
    return cached_splits(cache_dir, name, key, lambda: decode_cifar(name, root))


def source_files(name: str, root: Path) -> list[SourceFile]:
    """The files the dataset is decoded from; DatasetError when the folder or one is missing."""
    layout = LAYOUTS[name]
    hint = f"expected {layout.expected}; set RECU_DATA_DIR or dataset.root"
    if not root.is_dir():
        raise DatasetError(f"{name}: no dataset at {root}; {hint}")
    names = [*layout.train_files, layout.test_file, layout.meta_file]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DatasetError(f"{name}: {root} lacks {', '.join(missing)}; {hint}")
    return [SourceFile.stat(root, root / n) for n in names]


def decode_cifar(name: str, root: Path) -> Splits:
    """Read the train batches, the test batch and the class names from ``root``."""
    layout = LAYOUTS[name]
    classes = _read_classes(root / layout.meta_file, layout)
    train = [_read_batch(root / f, layout, len(classes)) for f in layout.train_files]
    test_images, test_labels = _read_batch(root / layout.test_file, layout, len(classes))
    return Splits(
        train_images=torch.cat([images for images, _ in train]),
        train_labels=torch.cat([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
    )


def _read_classes(path: Path, layout: CifarLayout) -> tuple[str, ...]:
    meta = _unpickle(path)
    names = meta.get(layout.names_key)
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: expected a list of class names under {layout.names_key!r}")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _read_batch(
    path: Path, layout: CifarLayout, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file as ((N, 3, 32, 32) uint8, (N,) int64)."""
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(layout.label_key)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise DatasetError(f"{path}: expected b'data' to be an (N, {_PIXELS}) uint8 array")
    if data.shape[1] != _PIXELS:
        raise DatasetError(f"{path}: b'data' rows hold {data.shape[1]} values, not {_PIXELS}")
    try:
        label_array = np.array(labels, dtype=np.int64)  # (N,)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: {layout.label_key!r} is not a list of integers") from exc
    if label_array.shape != (data.shape[0],):
        raise DatasetError(
            f"{path}: {data.shape[0]} images but {layout.label_key!r} has shape {label_array.shape}"
        )
    if label_array.size and not 0 <= label_array.min() <= label_array.max() < num_classes:
        raise DatasetError(f"{path}: labels must lie in [0, {num_classes})")
    images = np.array(data).reshape(-1, 3, _SIDE, _SIDE)  # (N, 3, 32, 32), an owned copy
    return torch.from_numpy(images), torch.from_numpy(label_array)


def _unpickle(path: Path) -> dict[bytes, Any]:
    """Load one pickled dict with the restricted unpickler (bytes keys, as CIFAR writes them)."""
    try:
        with path.open("rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        LookupError,
        AttributeError,
    ) as exc:
        raise DatasetError(f"{path}: not a readable CIFAR pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _multiarray_reconstruct() -> Callable[..., Any]:
    """numpy's array constructor; ``numpy.core`` warns on numpy 2, so prefer ``numpy._core``."""
    try:
        module = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        module = importlib.import_module("numpy.core.multiarray")
    reconstruct: Callable[..., Any] = module._reconstruct
    return reconstruct


def _codecs_encode(obj: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` restricted to text encodings (protocol-2 pickles spell bytes this way)."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise DatasetError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode(encoding)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _multiarray_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(
                f"refusing to load {module}.{name}: a CIFAR batch holds only numpy arrays, "
                "lists and strings"
            ) from None
