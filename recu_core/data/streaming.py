"""A streaming image-folder loader for data too large for memory (ImageNet: 1.28M JPEGs).

PyTorch's DataLoader with decoding worker processes: each worker reads a file,
decodes it (simplejpeg, i.e. libjpeg-turbo, for JPEG; Pillow for the rest) and
augments it as the official ImageNet recipe does:

    train  random-resized crop to S x S (area fraction uniform in ``crop_scale``, aspect
           ratio log-uniform in [3/4, 4/3], torchvision's algorithm) + horizontal flip
    eval   resize the shorter side to round(S * 256 / 224), centre crop S x S

and returns uint8 (S, S, 3); the main process moves each batch to the device one batch
ahead (pinned, non-blocking on CUDA) and normalises it there. Memory is bounded by the
prefetch depth and the worker count, not the dataset: the file list is one bytes buffer
with offsets (no Python object per file, so forked workers do not copy it page by page
through reference counting), and every image lives only while its batch does.

Exact resume: the order of an epoch is a permutation drawn from (seed, epoch) alone and
each sample's crop and flip from (seed, epoch, index), so an epoch's batches are the same
whatever the worker count and whether the run was resumed. Under DDP each rank takes
every world-th position of that permutation (DistributedSampler's sharding).

A file that cannot be decoded stops the run with a DatasetError naming it (no silent
skip: a corrupt ImageNet file is rare and worth knowing about); a worker that hangs
longer than ``WORKER_TIMEOUT_S`` fails the epoch instead of hanging it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import simplejpeg
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from recu_core.data.base import DatasetError
from recu_core.data.loader import epoch_seed, rank_shard, train_batches

WORKER_TIMEOUT_S = 600.0  # one batch from a worker; generous for network filesystems
EVAL_RESIZE_RATIO = 256 / 224  # resize-then-centre-crop of the ImageNet evaluation
_JPEG_SUFFIXES = (".jpg", ".jpeg")


class PathTable:
    """Many file paths in one bytes buffer with offsets: O(1) objects whatever the count."""

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [p.encode("utf-8", "surrogateescape") for p in paths]
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends.shape[0])

    def __getitem__(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i > 0 else 0
        return self._blob[start : int(self._ends[i])].tobytes().decode("utf-8", "surrogateescape")


@dataclass(frozen=True, eq=False)
class FileSplit:
    """One split's files (a PathTable) and labels (int64 array), in a fixed order."""

    files: PathTable
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, index: np.ndarray) -> FileSplit:
        return FileSplit(PathTable([self.files[int(i)] for i in index]), self.labels[index])


@dataclass(frozen=True, eq=False)
class StreamingDataset:
    """An image-folder dataset read from disk batch by batch (``DatasetConfig.loader``)."""

    name: str
    train: FileSplit
    test: FileSplit
    val: FileSplit | None
    classes: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_scale: tuple[float, float]
    flip: bool
    workers: int
    loader: str = "streaming"  # how the run is fed, and why (load_dataset's choice)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return 3  # every image is converted to RGB


def decode_rgb(path: str) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) uint8; DatasetError naming it when unreadable."""
    try:
        if path.lower().endswith(_JPEG_SUFFIXES):
            with open(path, "rb") as f:
                data = f.read()
            try:
                return simplejpeg.decode_jpeg(data, colorspace="RGB")
            except ValueError:
                pass  # CMYK, or damaged: Pillow converts the one and names the other
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"imagefolder: cannot read image {path} ({exc})") from exc


def random_resized_box(
    height: int, width: int, scale: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop: area fraction uniform in ``scale``, aspect ratio
    log-uniform in [3/4, 4/3]; ten tries, then the centre crop of the clamped ratio
    (torchvision's RandomResizedCrop.get_params)."""
    area = height * width
    log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, round(width / (3 / 4))
    elif in_ratio > 4 / 3:
        h, w = height, round(height * (4 / 3))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def train_view(
    image: np.ndarray, size: int, scale: tuple[float, float], flip: bool, rng: np.random.Generator
) -> np.ndarray:
    """Random-resized crop to (size, size, 3), bilinear, then a random horizontal flip."""
    left, top, w, h = random_resized_box(image.shape[0], image.shape[1], scale, rng)
    crop = Image.fromarray(image).resize(
        (size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h)
    )
    out = np.asarray(crop)
    return out[:, ::-1] if flip and rng.random() < 0.5 else out


def eval_view(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side resized to round(size * 256 / 224), then the centre (size, size) crop."""
    height, width = image.shape[:2]
    short = round(size * EVAL_RESIZE_RATIO)
    if height <= width:
        new_h, new_w = short, max(short, round(width * short / height))
    else:
        new_w, new_h = short, max(short, round(height * short / width))
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


class _Images(Dataset[tuple[Tensor, int]]):
    """Index (epoch, i) -> (uint8 (S, S, 3), label): decoded and augmented in the worker
    (channels last, as decoded: the main process permutes the batch on the device)."""

    def __init__(self, split: FileSplit, data: StreamingDataset, *, train: bool, seed: int):
        self.split, self.train, self.seed = split, train, seed
        self.size, self.scale, self.flip = data.image_size, data.crop_scale, data.flip

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, int]:
        epoch, i = key
        image = decode_rgb(self.split.files[i])
        if self.train:
            rng = np.random.default_rng((self.seed, epoch, i))
            view = train_view(image, self.size, self.scale, self.flip, rng)
        else:
            view = eval_view(image, self.size)
        return torch.from_numpy(np.array(view, order="C")), int(self.split.labels[i])  # (S, S, 3)


class _EpochBatches(Sampler[list[tuple[int, int]]]):
    """The batches of (epoch, index) of this rank for the epoch set by ``set_epoch``."""

    def __init__(
        self, n: int, batch_size: int, *, train: bool, seed: int, rank: int, world_size: int
    ) -> None:
        self.n, self.batch_size, self.train, self.seed = n, batch_size, train, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> Tensor:
        if not self.train:
            return torch.arange(self.n)[self.rank :: self.world_size]
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return rank_shard(torch.randperm(self.n, generator=gen), self.rank, self.world_size)

    def __len__(self) -> int:
        if self.train:
            return train_batches(self.n, self.batch_size, self.world_size)
        return -(-len(range(self.rank, self.n, self.world_size)) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self._order().tolist()
        size = min(self.batch_size, len(order)) or 1
        for b in range(len(self)):
            yield [(self.epoch, i) for i in order[b * size : (b + 1) * size]]


class StreamingLoader:
    """Batches of normalised float32 images and int64 labels, decoded by worker processes.

    Same interface as DeviceLoader: ``len()`` batches per epoch and ``epoch(e)``; training
    drops the last incomplete batch when there is at least one full one.
    """

    def __init__(
        self,
        data: StreamingDataset,
        split: FileSplit,
        *,
        batch_size: int,
        train: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.batches = _EpochBatches(
            len(split), batch_size, train=train, seed=seed, rank=rank, world_size=world_size
        )
        workers = data.workers
        self.loader = DataLoader(
            _Images(split, data, train=train, seed=seed),
            batch_sampler=self.batches,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            timeout=WORKER_TIMEOUT_S if workers > 0 else 0,
            multiprocessing_context=_context() if workers > 0 else None,
        )
        self.mean = torch.tensor(data.mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(data.std, device=self.device).view(1, -1, 1, 1) * 255

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of ``epoch``: ((B, 3, S, S) float32 normalised, (B,) int64)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.batches.set_epoch(epoch)
        pending: tuple[Tensor, Tensor] | None = None
        for images, labels in self.loader:  # (B, S, S, 3) uint8, (B,)
            ready = (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )
            if pending is not None:
                yield self._normalise(pending[0]), pending[1]
            pending = ready  # the next batch is already on its way to the device
        if pending is not None:
            yield self._normalise(pending[0]), pending[1]

    def _normalise(self, x: Tensor) -> Tensor:
        """uint8 (B, S, S, 3) -> float32 (B, 3, S, S), (x - 255 mean) / (255 std), on the
        device; channels_last is the decoded layout already, else made contiguous."""
        out = x.permute(0, 3, 1, 2).float().sub_(self.mean).div_(self.std)  # (B, 3, S, S)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return out.contiguous(memory_format=fmt)


def _context() -> str:
    """fork where it is safe and cheap (Linux, no CUDA initialised yet), else spawn."""
    if os.name == "posix" and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"
