"""Images/s of the fast 1-bit engine, the reference engine and PyTorch float inference,
side by side on the same CPU and threads, at batch 1 and batch 64; the binary layers
alone beside the whole model; and the two candidate routes for the binary conv.

Models at CIFAR-10 shape (3x32x32), random weights (speed does not depend on them).
Rounds are interleaved (every engine once per round) and the median is printed.
"binary layers alone": the time spent inside the binary convs of one forward pass
(float: BinaryConv2d, packed: PackedBinaryConv2d), measured with forward hooks.
Routes for one binary conv (ResNet-18's layer shapes, batch 64): the Numba kernel kept
as the fast engine, against ``torch._int_mm`` on +-1 int8 columns (im2col, exact int32
sums, oneDNN) and the float conv of the same sign tensors.
Peak memory: the process's peak RSS during a batch-64 forward pass above its RSS just
before (after one warm-up pass), each engine in a fresh child process.

    .venv/bin/python -m bench.engine_speed [--models resnet20 resnet18 vgg_small]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.common import environment, interleaved, median
from recu_core.config import TrainConfig
from recu_core.export.bits import pack_bits
from recu_core.export.bnn_file import export_model, load_packed_model
from recu_core.export.engines import channel_packed_filters, fast_conv
from recu_core.export.packed_layers import PackedBinaryConv2d
from recu_core.layers import BinaryConv2d
from recu_core.models import create_model

SHAPE = {"num_classes": 10, "in_channels": 3, "image_size": 32}


def _models(name: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    config = TrainConfig(model=name)
    model = create_model(name, **SHAPE, binary=True, options=config.binary_options).eval()
    data = export_model(model, config, SHAPE)
    return {
        "float": model,
        "fast": load_packed_model(data, engine="fast"),
        "reference": load_packed_model(data, engine="reference"),
    }


class _BinaryTimer:
    """Seconds spent inside the binary layers during the forward passes it watches."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seconds = 0.0
        self._start = 0.0
        for module in model.modules():
            if isinstance(module, BinaryConv2d | PackedBinaryConv2d):
                module.register_forward_pre_hook(self._enter)
                module.register_forward_hook(self._leave)

    def _enter(self, *_: object) -> None:
        self._start = time.perf_counter()

    def _leave(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._start


def _rate(model: torch.nn.Module, timer: _BinaryTimer, x: torch.Tensor, repeat: int):
    """(whole-model images/s, binary-layers images/s) over ``repeat`` forward passes."""
    timer.seconds = 0.0
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(repeat):
            model(x)
        whole = time.perf_counter() - start
    images = x.shape[0] * repeat
    return images / whole, images / max(timer.seconds, 1e-9)


def _speed_at(models, timers, batch: int, repeat: int, rounds: int):
    """Median (whole-model, binary-layers) images/s per engine at one batch size."""
    x = torch.randn(batch, 3, 32, 32)
    for engine, model in models.items():  # warm-up (and the fast kernels' compile)
        _rate(model, timers[engine], x, 1)
    figures: dict[str, list[tuple[float, float]]] = {engine: [] for engine in models}

    def run(engine: str) -> float:
        figures[engine].append(_rate(models[engine], timers[engine], x, repeat))
        return figures[engine][-1][0]

    interleaved({engine: lambda e=engine: run(e) for engine in models}, rounds=rounds)
    whole = {e: median([f[0] for f in v]) for e, v in figures.items()}
    binary = {e: median([f[1] for f in v]) for e, v in figures.items()}
    return whole, binary


def _speed(name: str, rounds: int) -> None:
    models = _models(name)
    timers = {engine: _BinaryTimer(model) for engine, model in models.items()}
    for batch, repeat in ((64, 1), (1, 20)):
        whole, binary = _speed_at(models, timers, batch, repeat, rounds)
        print(
            f"| {name} | {batch} | {whole['float']:.0f} | {whole['reference']:.0f} | "
            f"{whole['fast']:.0f} | **{whole['fast'] / whole['float']:.2f}** | "
            f"{binary['float']:.0f} | {binary['fast']:.0f} | "
            f"{binary['fast'] / binary['float']:.2f} |",
            flush=True,
        )


def _int_mm_conv(x: torch.Tensor, weight_t: torch.Tensor, stride: int) -> torch.Tensor:
    """The binary conv by ``torch._int_mm``: +-1 int8 columns (zero padding stays 0)."""
    b, _, h, _ = x.shape
    signs = torch.where(torch.signbit(x), -1, 1).to(torch.int8)
    cols = F.unfold(signs.float(), 3, padding=1, stride=stride).to(torch.int8)
    rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (B*L, K)
    out = torch._int_mm(rows, weight_t)  # (B*L, O) int32, exact
    side = (h + 2 - 3) // stride + 1
    return out.view(b, side * side, -1)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return 64 / (time.perf_counter() - start)


def _route(channels: int, outs: int, size: int, stride: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    x = torch.randn(64, channels, size, size).contiguous(memory_format=torch.channels_last)
    w = rng.integers(0, 2, (outs, channels * 9), dtype=np.uint8)
    filters = channel_packed_filters(pack_bits(w, axis=1), channels, (3, 3))
    ones, zeros = np.ones(outs), np.zeros(outs)
    signs_w = torch.from_numpy(1.0 - 2.0 * w.reshape(outs, channels, 3, 3)).float()
    weight_t = signs_w.reshape(outs, -1).t().contiguous().to(torch.int8)
    runs = {
        "float conv": lambda: _timed(
            lambda: F.conv2d(torch.where(torch.signbit(x), -1.0, 1.0), signs_w, padding=1)
        ),
        "torch._int_mm": lambda: _timed(lambda: _int_mm_conv(x, weight_t, stride)),
        "numba": lambda: _timed(
            lambda: fast_conv(x, filters, ones, zeros, (stride, stride), (1, 1), channels)
        ),
    }
    for run in runs.values():
        run()
    speed = {k: median(v) for k, v in interleaved(runs, rounds=rounds).items()}
    print(
        f"| {channels}->{outs}, {size}x{size} | {speed['float conv']:.0f} | "
        f"{speed['torch._int_mm']:.0f} | {speed['numba']:.0f} | "
        f"{speed['torch._int_mm'] / speed['float conv']:.2f} | "
        f"{speed['numba'] / speed['float conv']:.2f} |",
        flush=True,
    )


def _routes(rounds: int) -> None:
    for channels, outs, size in ((64, 64, 32), (128, 128, 16), (256, 256, 8), (512, 512, 4)):
        _route(channels, outs, size, 1, rounds)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith(field)))


def _peak_child(name: str, engine: str) -> None:
    """Peak RSS over one batch-64 pass above the RSS before it (Linux: clear_refs 5
    resets the high-water mark), in MiB."""
    models = _models(name)
    model = models[engine]
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        model(x)  # compile, allocate caches, first-touch the allocator's pools
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS:")
        model(x)
    print((_status_kib("VmHWM:") - before) / 1024)


def _peak(name: str) -> None:
    peaks = {}
    for engine in ("float", "reference", "fast"):
        done = subprocess.run(
            [sys.executable, "-m", "bench.engine_speed", "--peak-of", name, engine],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[engine] = float(done.stdout.split()[-1])
    print(
        f"| {name} | {peaks['float']:.0f} | {peaks['reference']:.0f} | {peaks['fast']:.0f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet18", "vgg_small"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peak-of", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        _peak_child(*args.peak_of)
        return
    print(f"# {environment()}")
    print(
        "| model | batch | float img/s | reference img/s | fast img/s | fast / float | "
        "float binary layers img/s | fast binary layers img/s | binary layers fast / float |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        _speed(name, args.rounds)
    print("\nOne binary 3x3 conv, batch 64, images/s (routes for the fast engine):")
    print("| layer | float conv | torch._int_mm | numba | _int_mm / float | numba / float |")
    print("|---|---|---|---|---|---|")
    _routes(args.rounds)
    print("\nPeak memory growth over one batch-64 forward pass, MiB:")
    print("| model | float | reference | fast |")
    print("|---|---|---|---|")
    for name in args.models:
        _peak(name)


if __name__ == "__main__":
    main()
