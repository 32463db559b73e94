"""A data loader that keeps the uint8 dataset on the training device and augments it there.

For datasets that fit in device memory (CIFAR is 150 MB as uint8) this replaces
``torch.utils.data.DataLoader``: no worker processes, no per-sample Python, no
host-to-device copy per step. Random crops and flips are drawn per sample from a
device generator seeded by ``(seed, epoch)`` alone, so an epoch's batches are the
same whether the run was resumed from a checkpoint or not. ``epoch()`` never
reads a device value on the host, so it never makes the host wait for the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_EPOCH_STRIDE = 1_000_003  # seed * stride + epoch: distinct generator seeds per (seed, epoch)


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch of one run: distinct per (seed, epoch)."""
    return seed * _EPOCH_STRIDE + epoch


def rank_shard(order: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s equal shard of an epoch's global permutation (DistributedSampler's
    rule: drop the tail that does not divide, then every world-th position)."""
    if world_size == 1:
        return order
    n = order.shape[0] // world_size
    return order[: n * world_size][rank::world_size]  # (N / W,)


def train_batches(n: int, batch_size: int, world_size: int) -> int:
    """Training batches per epoch of a rank: the last incomplete batch is dropped when
    there is at least one full one (BatchNorm is noisy on tiny batches)."""
    n //= world_size
    return n // batch_size if n >= batch_size else min(n, 1)


class DeviceLoader:
    """Batches of normalised float32 images and int64 labels from device-resident uint8 tensors.

    ``train=True``: a fresh permutation per epoch, random crop (zero padding
    ``crop_padding``) and horizontal flip, and the last incomplete batch dropped
    when there is at least one full batch (BatchNorm is noisy on tiny batches).
    ``train=False``: the stored order, no augmentation, every sample once.
    With ``world_size > 1`` (distributed data parallel) each rank gets an equal shard of the
    epoch's global permutation in training, and every ``world_size``-th sample in evaluation.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        crop_padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(
                f"images must be (N, C, H, W) uint8, got {tuple(images.shape)} {images.dtype}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values (one per channel)")
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("crop_padding", crop_padding, 0),
            ("seed", seed, 0),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        self.device = torch.device(device)
        self.images = images.to(self.device)  # (N, C, H, W) uint8
        self.labels = labels.to(self.device, torch.int64)  # (N,)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.batch_size = batch_size
        self.train = train
        self.crop_padding = crop_padding
        self.flip = flip
        self.seed = seed
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        self.rank, self.world_size = rank, world_size
        if not train and world_size > 1:  # a fixed shard of the evaluation set per rank
            self.images, self.labels = self.images[rank::world_size], self.labels[rank::world_size]
        self.channels_last = channels_last

    def __len__(self) -> int:
        """Batches per epoch (of this rank's shard)."""
        n, b = self.images.shape[0], self.batch_size
        if self.train:
            return train_batches(n, b, self.world_size)
        return -(-n // b)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of ``epoch``: ((B, C, H, W) float32 normalised, (B,) int64)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return self._train_batches(epoch) if self.train else self._test_batches()

    def _train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(self.images.shape[0], generator=gen, device=self.device)  # (N,)
        order = rank_shard(order, self.rank, self.world_size)
        size = min(self.batch_size, order.shape[0])
        for i in range(len(self)):
            index = order[i * size : (i + 1) * size]  # (B,)
            x = self.images.index_select(0, index)  # (B, C, H, W) uint8
            if self.crop_padding > 0:
                x = random_crop(x, self.crop_padding, gen)
            if self.flip:
                x = random_flip(x, gen)
            yield self._normalise(x), self.labels.index_select(0, index)

    def _test_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, self.images.shape[0], self.batch_size):
            stop = start + self.batch_size
            yield self._normalise(self.images[start:stop]), self.labels[start:stop]

    def _normalise(self, x: Tensor) -> Tensor:
        """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std, in channels_last if asked."""
        out = x.float().mul_(1.0 / 255.0).sub_(self.mean).div_(self.std)  # (B, C, H, W)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def random_crop(x: Tensor, padding: int, gen: torch.Generator) -> Tensor:
    """Per-sample random crops of the zero-padded batch, gathered in one indexing op.

    Sample i is ``pad(x[i])[:, dy_i : dy_i + H, dx_i : dx_i + W]`` with offsets
    uniform in [0, 2 * padding].
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    offsets = torch.randint(
        0, 2 * padding + 1, (2, b), generator=gen, device=x.device
    )  # (2, B): dy, dx
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]  # (B, 1, 1, 1)
    chan = torch.arange(c, device=x.device)[None, :, None, None]  # (1, C, 1, 1)
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def random_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Mirror each sample left-right with probability 1/2."""
    mask = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5  # (B,)
    return torch.where(mask[:, None, None, None], x.flip(3), x)  # (B, C, H, W)
