"""Disk cache of decoded splits: decode a folder of images or pickles once, load fast after.

The cache file is named by a key over what the decoding depends on (the
resolved source root, the target image size and the (path, size, mtime)
listing of the source files), so editing, adding or removing a source file
rebuilds it. Files are safetensors (no code runs on load) written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from recu_core.data.base import DatasetError, Splits

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
_TENSORS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class SourceFile:
    """One source file as the cache key sees it."""

    relpath: str  # relative to the dataset root, "/"-separated
    size: int
    mtime_ns: int

    @classmethod
    def stat(cls, root: Path, path: Path) -> SourceFile:
        """Describe ``path`` (inside ``root``) by its relative path, size and mtime."""
        st = path.stat()
        return cls(path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns)


def cache_key(root: Path, image_size: int | None, files: Sequence[SourceFile]) -> str:
    """First 16 hex digits of the sha256 over the root, the image size and the file listing."""
    payload = {
        "version": _FORMAT_VERSION,
        "root": str(root.resolve()),
        "image_size": image_size,
        "files": [[f.relpath, f.size, f.mtime_ns] for f in files],
    }
    digest = hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode())
    return digest.hexdigest()[:16]


def cached_splits(
    cache_dir: Path,
    name: str,
    key: str,
    build: Callable[[], Splits],
) -> Splits:
    """Read ``<cache_dir>/<name>-<key>.safetensors``, or ``build()`` and write it."""
    path = cache_dir / f"{name}-{key}.safetensors"
    if path.exists():
        splits = read_splits(path)
        if splits is not None:
            return splits
        log.warning("ignoring unreadable dataset cache %s; rebuilding it", path)
    splits = build()
    try:
        write_splits(path, splits)
    except OSError as exc:
        log.warning("could not write dataset cache %s: %s", path, exc)
    return splits


def read_splits(path: Path) -> Splits | None:
    """The splits stored at ``path``, or None when the file is corrupt or incomplete."""
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("version") != str(_FORMAT_VERSION):
                return None
            classes = tuple(json.loads(metadata["classes"]))
            # Copies, not views of the memory map: the dataset must not change if the file does.
            own = {
                k: f.get_tensor(k).clone(memory_format=torch.contiguous_format) for k in _TENSORS
            }
        return Splits(
            train_images=own["train_images"],
            train_labels=own["train_labels"],
            test_images=own["test_images"],
            test_labels=own["test_labels"],
            classes=classes,
        )
    except (OSError, ValueError, KeyError, TypeError, safetensors.SafetensorError, DatasetError):
        return None


def write_splits(path: Path, splits: Splits) -> None:
    """Write ``splits`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: getattr(splits, k).contiguous() for k in _TENSORS}
    metadata = {"classes": json.dumps(list(splits.classes)), "version": str(_FORMAT_VERSION)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        safetensors.torch.save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
