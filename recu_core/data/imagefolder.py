"""Folders of JPEG/PNG files, one folder per class (the torchvision ImageFolder layout).

``<root>/train/<class>/*`` and ``<root>/test/<class>/*`` (or ``val/``). Decoding
runs on a thread pool (PIL releases the GIL while decoding) straight into one
preallocated uint8 array rather than a list of per-image arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from recu_core.data.base import DatasetError, Splits
from recu_core.data.cache import SourceFile, cache_key, cached_splits

LAYOUT = "<root>/train/<class>/*.jpg|png and <root>/test|val/<class>/*.jpg|png"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "F"} | _SIXTEEN_BIT_MODES)

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class FolderSplit:
    """The image files of one split in a fixed order (class, then file name), and their listing.

    Paths are plain strings: pathlib costs more than the stat calls on 60,000 files.
    """

    classes: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]
    listing: tuple[SourceFile, ...]  # relative to the dataset root


@dataclass(frozen=True)
class FolderLayout:
    """What ``scan`` found under a root: the classes and both splits."""

    root: Path
    classes: tuple[str, ...]
    train: FolderSplit
    test: FolderSplit


def load_imagefolder(root: Path, image_size: int | None, cache_dir: Path) -> Splits:
    """Decode ``root`` once into the cache (keyed by the listing and size), then read it."""
    layout = scan(root)
    key = cache_key(root, image_size, layout.train.listing + layout.test.listing)
    return cached_splits(cache_dir, "imagefolder", key, lambda: decode(layout, image_size))


def scan(root: Path, *, with_listing: bool = True) -> FolderLayout:
    """List the classes and image files under ``root``; DatasetError when the layout is wrong.

    ``with_listing=False`` skips the per-file stat that the decode cache's key needs (the
    streaming loader has no cache; on 1.28M files the stat calls are most of the scan)."""
    if not root.is_dir():
        raise DatasetError(
            f"imagefolder: no dataset at {root}; expected {LAYOUT}; "
            "set RECU_DATA_DIR or dataset.root"
        )
    if not (root / "train").is_dir():
        raise DatasetError(f"imagefolder: {root} has no train/ folder; expected {LAYOUT}")
    test_name = next((n for n in ("test", "val") if (root / n).is_dir()), None)
    if test_name is None:
        raise DatasetError(f"imagefolder: {root} has no test/ or val/ folder; expected {LAYOUT}")
    train = _scan_split(root, "train", require_every_class=True, with_listing=with_listing)
    test = _scan_split(root, test_name, require_every_class=False, with_listing=with_listing)
    if train.classes != test.classes:
        raise DatasetError(
            f"imagefolder: class folders differ between {root / 'train'} "
            f"(only there: {sorted(set(train.classes) - set(test.classes))}) and "
            f"{root / test_name} (only there: {sorted(set(test.classes) - set(train.classes))}); "
            f"expected {LAYOUT}"
        )
    return FolderLayout(root, train.classes, train, test)


def decode(layout: FolderLayout, image_size: int | None) -> Splits:
    """Decode every image to (C, S, S) uint8: 1 channel if the train split is all grayscale."""
    files = layout.train.files + layout.test.files
    headers = _parallel_map(_read_header, files)  # (mode, (width, height)) per file
    gray = all(mode in _GRAY_MODES for mode, _ in headers[: len(layout.train.files)])
    channels = 1 if gray else 3
    side = image_size if image_size is not None else _common_side(files, headers)
    out = np.empty((len(files), side, side, channels), dtype=np.uint8)  # (N, S, S, C)

    def decode_into(index: int) -> None:
        out[index] = _decode_image(files[index], channels, side).reshape(side, side, channels)

    _parallel_map(decode_into, range(len(files)))
    n_train = len(layout.train.files)
    return Splits(
        train_images=_channels_first(out[:n_train]),
        train_labels=torch.tensor(layout.train.labels, dtype=torch.int64),
        test_images=_channels_first(out[n_train:]),
        test_labels=torch.tensor(layout.test.labels, dtype=torch.int64),
        classes=layout.classes,
    )


def _channels_first(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, C) uint8 array -> contiguous (N, C, S, S) tensor with its own storage."""
    chw = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, C, S, S), a view of the array
    return chw.clone(memory_format=torch.contiguous_format)


def _scan_split(
    root: Path, split: str, *, require_every_class: bool, with_listing: bool
) -> FolderSplit:
    """The sorted class folders of ``root/split`` and their sorted image files."""
    directory = os.path.join(root, split)
    class_dirs = sorted(
        (e for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")),
        key=lambda e: e.name,
    )
    if not class_dirs:
        raise DatasetError(f"imagefolder: {directory} has no class folders; expected {LAYOUT}")
    files: list[str] = []
    labels: list[int] = []
    listing: list[SourceFile] = []
    for label, class_dir in enumerate(class_dirs):
        entries = sorted(
            (e for e in os.scandir(class_dir.path) if _is_image(e)), key=lambda e: e.name
        )
        if require_every_class and not entries:
            raise DatasetError(
                f"imagefolder: class folder {class_dir.path} holds no .jpg/.jpeg/.png images; "
                f"expected {LAYOUT}"
            )
        for entry in entries:
            files.append(entry.path)
            labels.append(label)
            if with_listing:
                st = entry.stat()
                listing.append(
                    SourceFile(f"{split}/{class_dir.name}/{entry.name}", st.st_size, st.st_mtime_ns)
                )
    if not files:
        raise DatasetError(
            f"imagefolder: {directory} holds no .jpg/.jpeg/.png images; expected {LAYOUT}"
        )
    classes = tuple(e.name for e in class_dirs)
    return FolderSplit(classes, tuple(files), tuple(labels), tuple(listing))


def _is_image(entry: os.DirEntry[str]) -> bool:
    return entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES


def _read_header(path: str) -> tuple[str, tuple[int, int]]:
    """Mode and (width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.mode, img.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from exc


def _common_side(files: Sequence[str], headers: Sequence[tuple[str, tuple[int, int]]]) -> int:
    """The one square size all images share; DatasetError naming two files when they differ."""
    first_size = headers[0][1]
    for path, (_, size) in zip(files, headers, strict=True):
        if size != first_size:
            raise DatasetError(
                f"imagefolder: images differ in size: {files[0]} is {_wxh(first_size)} but "
                f"{path} is {_wxh(size)}; set dataset.image_size to resize them all"
            )
    width, height = first_size
    if width != height:
        raise DatasetError(
            f"imagefolder: images are {_wxh(first_size)} (e.g. {files[0]}), not square; "
            "set dataset.image_size to resize them to a square"
        )
    return width


def _decode_image(path: str, channels: int, side: int) -> np.ndarray:
    """One image as (S, S) or (S, S, 3) uint8: converted to L or RGB, resized if needed."""
    try:
        with Image.open(path) as file:
            file.load()  # decode now, while the file is open
            img = _convert(file, "L" if channels == 1 else "RGB")
        if img.size != (side, side):
            img = img.resize((side, side), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from exc


def _convert(img: Image.Image, mode: str) -> Image.Image:
    """Convert to L or RGB; 16-bit grayscale is rescaled (PIL would clip it at 255)."""
    if img.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.int64).clip(0, 65535)  # (H, W)
        img = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == mode else img.convert(mode)


def _unreadable(path: str, exc: Exception) -> DatasetError:
    return DatasetError(f"imagefolder: cannot read image {path} ({exc}); expected {LAYOUT}")


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _parallel_map(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``map`` on a thread pool, in order; the first exception propagates.

    Items go to the threads in chunks: a 32x32 JPEG decodes in about 0.1 ms, less
    than the cost of one future, so one task per image would be slower than a loop.
    """
    workers = min(32, (os.cpu_count() or 1) + 4)
    chunk = max(1, min(256, -(-len(items) // (4 * workers))))
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda part: [fn(item) for item in part], chunks)
        return [result for part in parts for result in part]
