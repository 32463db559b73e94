"""Which data a run read (``DatasetIdentity``), for its reproducibility manifest.

- **Listing**: sha256 over the sorted ``relative/path<TAB>size`` lines of the source
  files (CIFAR's batch files; an image folder's images), their count and total size. Sizes
  and names, not modification times, so the same data copied elsewhere hashes the same.
  A streamed image folder lists the files the run reads (after subsetting) by name only:
  its loader skips the per-file stat on purpose (on 1.28M files it is most of the scan),
  so its ``bytes`` is None.
- **Content**: sha256 over the decoded uint8 images and int64 labels the run used, split
  by split (train, validation, test): the exact tensors, whatever files they came from.
  In memory only; 0.10 s for CIFAR-10 (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch

from recu_core.config import DatasetConfig
from recu_core.data.base import ImageDataset
from recu_core.data.cache import SourceFile
from recu_core.data.cifar import LAYOUTS, source_files
from recu_core.data.datasets import resolve_root
from recu_core.data.imagefolder import scan
from recu_core.data.streaming import FileSplit, StreamingDataset
from recu_core.manifest import DatasetIdentity
from recu_core.settings import DataSettings


def listing_sha256(lines: Iterable[str]) -> str:
    """sha256 over the sorted lines, each ended by a newline."""
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def content_sha256(tensors: Iterable[torch.Tensor | None]) -> str:
    """sha256 over the tensors' bytes, in order (None: skipped, marked)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        if tensor is None:
            digest.update(b"none")
            continue
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.data)  # a C-contiguous buffer: hashed without a copy
    return digest.hexdigest()


def _file_listing(files: list[SourceFile]) -> tuple[str, int, int]:
    return (
        listing_sha256(f"{f.relpath}\t{f.size}" for f in files),
        len(files),
        sum(f.size for f in files),
    )


def _streamed_names(root: str, splits: Iterable[FileSplit | None]) -> list[str]:
    prefix = root.rstrip("/") + "/"
    names: list[str] = []
    for split in splits:
        if split is not None:
            names.extend(split.files[i].removeprefix(prefix) for i in range(len(split)))
    return names


def dataset_identity(
    cfg: DatasetConfig,
    dataset: ImageDataset | StreamingDataset,
    settings: DataSettings,
    *,
    list_files: bool = True,
) -> DatasetIdentity:
    """The identity of ``dataset``, loaded from ``cfg`` under ``settings`` (its source
    files are listed only when ``list_files``: a dataset built otherwise has none)."""
    listing: tuple[str | None, int | None, int | None] = (None, None, None)
    if list_files and cfg.name in LAYOUTS:
        root = resolve_root(cfg.root or LAYOUTS[cfg.name].folder, settings.data_dir)
        listing = _file_listing(source_files(cfg.name, root))
    elif list_files and cfg.name == "imagefolder" and cfg.root is not None:
        root = resolve_root(cfg.root, settings.data_dir)
        if isinstance(dataset, StreamingDataset):
            names = _streamed_names(str(root), (dataset.train, dataset.val, dataset.test))
            listing = (listing_sha256(names), len(names), None)
        else:
            layout = scan(root)
            listing = _file_listing([*layout.train.listing, *layout.test.listing])
    if isinstance(dataset, StreamingDataset):
        return DatasetIdentity(
            name=cfg.name,
            listing_sha256=listing[0],
            files=listing[1],
            bytes=listing[2],
            train_examples=len(dataset.train),
            val_examples=0 if dataset.val is None else len(dataset.val),
            test_examples=len(dataset.test),
        )
    val_labels = dataset.val_labels
    return DatasetIdentity(
        name=cfg.name,
        listing_sha256=listing[0],
        files=listing[1],
        bytes=listing[2],
        content_sha256=content_sha256(
            (
                dataset.train_images,
                dataset.train_labels,
                dataset.val_images,
                dataset.val_labels,
                dataset.test_images,
                dataset.test_labels,
            )
        ),
        train_examples=int(dataset.train_labels.shape[0]),
        val_examples=0 if val_labels is None else int(val_labels.shape[0]),
        test_examples=int(dataset.test_labels.shape[0]),
    )


__all__ = ["content_sha256", "dataset_identity", "listing_sha256"]
