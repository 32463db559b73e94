"""GPU check, one prepared script for one NVIDIA GPU (under 5 minutes):

1. a training step of every CIFAR model (ReCU binary, batch 256, 3x32x32) in fp32 and in
   bf16 autocast + channels_last, under ``torch.cuda.set_sync_debug_mode("error")`` so
   any device-to-host synchronisation in the step fails loudly; images/s of each;
2. the streaming image-folder loader feeding the GPU: a generated folder of 256x256
   JPEGs, random-resized crops at 224, 8 decoding workers; images/s of the loader alone
   and of ReCU ResNet-18 (ImageNet) train steps fed by it;
3. the real training loop: synchronisations per epoch under sync-debug "warn"
   (expected: one, the metrics transfer), then a short CIFAR-10 ResNet-20 run (the
   official recipe shortened to --epochs) with its best and last test accuracy.

    bash bench/gpu_check.sh                      # on the GPU machine
    .venv/bin/python -m bench.gpu_check --smoke  # a CPU run of the same code, tiny sizes

CIFAR-10 is read from RECU_DATA_DIR/cifar10-jpeg (``make data``), or extracted from
--cifar-archive; without either, step 3's accuracy run is skipped with a message.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import tarfile
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.streaming_loader import make_jpeg_folder
from recu_core.config import DatasetConfig, TrainConfig
from recu_core.data import load_dataset, make_loader
from recu_core.layers import set_tau, use_compiled_kernels
from recu_core.models import create_model
from recu_core.settings import DataSettings
from recu_core.train import train

CIFAR_MODELS = ("resnet20", "resnet18", "resnet18_bireal", "vgg_small")


@contextlib.contextmanager
def sync_debug(mode: str, cuda: bool) -> Iterator[None]:
    """``torch.cuda.set_sync_debug_mode(mode)`` for the block (nothing on the CPU)."""
    if cuda:
        torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_throughput(
    name: str, device: torch.device, *, bf16: bool, channels_last: bool, steps: int, batch: int
) -> float:
    """Images/s of ReCU train steps on device-resident random CIFAR-shaped batches."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3, image_size=32).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)  # type: ignore[call-overload]
    set_tau(model, 0.9)
    use_compiled_kernels(model)  # the trainer's default: fused activation kernels
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def run(n: int) -> None:
        for _ in range(n):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(5)  # warm-up: compilation, cuDNN autotuning and allocator growth may synchronise
    _sync(device)
    start = time.perf_counter()
    with sync_debug("error", device.type == "cuda"):
        run(steps)
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def streaming_throughput(
    root: Path, device: torch.device, *, size: int, batches: int, batch: int, workers: int
) -> tuple[float, float]:
    """(loader alone, loader + ReCU ResNet-18 ImageNet train steps) in images/s."""
    settings = DataSettings(data_dir=root.parent, cache_dir=root.parent / "cache")
    cfg = DatasetConfig(
        name="imagefolder", root=root.name, image_size=size, loader="streaming", workers=workers
    )
    data = load_dataset(cfg, settings=settings)
    loader = make_loader(data, "train", batch_size=batch, device=device, channels_last=True)

    def timed(step: bool) -> float:
        model = opt = None
        if step:
            torch.manual_seed(0)
            model = create_model(
                "resnet18_imagenet", num_classes=data.num_classes, in_channels=3, image_size=size
            ).to(device, memory_format=torch.channels_last)
            set_tau(model, 0.9)
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        seen, start = 0, None
        for epoch in itertools.count():
            for i, (x, y) in enumerate(loader.epoch(epoch)):
                if model is not None and opt is not None:
                    with torch.autocast(device.type, dtype=torch.bfloat16):
                        loss = F.cross_entropy(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if start is None and i == 1:  # workers and first batches warm
                    _sync(device)
                    start = time.perf_counter()
                elif start is not None:
                    seen += y.shape[0]
                if seen >= batches * batch:
                    _sync(device)
                    return seen / (time.perf_counter() - start)
        raise AssertionError("unreachable")

    return timed(False), timed(True)


def loop_syncs(device: torch.device, settings: DataSettings, epochs: int = 3) -> list[int]:
    """Synchronisations per epoch of the real training loop, after the first epoch (whose
    set-up copies are not counted): differences of the warning count between callbacks."""
    config = TrainConfig(
        dataset=DatasetConfig(name="synthetic", num_train=4096, num_test=1024),
        epochs=epochs,
        batch_size=256,
        precision="bf16",
        channels_last=True,
        device=str(device),
    )
    data = load_dataset(config.dataset, settings=settings)
    marks: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with sync_debug("warn", device.type == "cuda"):
            train(config, dataset=data, callbacks=[lambda report: marks.append(len(caught))])
    for w in caught[marks[0] :]:
        print(f"  sync: {w.filename}:{w.lineno}: {str(w.message)[:100]}")
    return [b - a for a, b in itertools.pairwise(marks)]


def cifar_settings(archive: Path | None, scratch: Path) -> DataSettings | None:
    """DataSettings whose data_dir holds cifar10-jpeg, or None where there is none."""
    env = DataSettings()
    if (env.data_dir / "cifar10-jpeg" / "test").is_dir():
        return env
    if archive is None or not archive.is_file():
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="data")
    return DataSettings(data_dir=scratch, cache_dir=scratch / "cache")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: the code runs")
    parser.add_argument("--epochs", type=int, default=30, help="CIFAR-10 ResNet-20 run")
    parser.add_argument("--cifar-archive", type=Path, default=None)
    args = parser.parse_args()
    smoke = args.smoke
    device = torch.device("cpu" if smoke else "cuda")
    if not smoke:
        assert torch.cuda.is_available(), "no CUDA device visible to torch"
        torch.backends.cudnn.benchmark = True
        print(
            f"# GPU check: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
            f"{os.cpu_count()} CPU cores"
        )
    steps, batch = (2, 16) if smoke else (30, 256)
    print("## 1. train step, batch 256, sync-debug 'error' (a host sync fails the step)")
    print("| model | fp32 img/s | bf16 + channels_last img/s |")
    print("|---|---|---|")
    for name in CIFAR_MODELS:
        fp32 = step_throughput(
            name, device, bf16=False, channels_last=False, steps=steps, batch=batch
        )
        bf16 = step_throughput(
            name, device, bf16=True, channels_last=True, steps=steps, batch=batch
        )
        print(f"| {name} | {fp32:,.0f} | {bf16:,.0f} |", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        count, size, workers = (48, 32, 0) if smoke else (6000, 224, 8)
        started = time.perf_counter()
        make_jpeg_folder(scratch / "gen", count, classes=10, side=256 if not smoke else 40)
        print(
            f"## 2. streaming loader: {count} generated 256x256 JPEGs "
            f"({time.perf_counter() - started:.0f} s to write), crops at {size}, "
            f"{workers} workers"
        )
        alone, fed = streaming_throughput(
            scratch / "gen",
            device,
            size=size,
            batches=3 if smoke else 40,
            batch=8 if smoke else 256,
            workers=workers,
        )
        print(
            f"loader alone: {alone:,.0f} img/s; feeding ReCU ResNet-18 (ImageNet) bf16 "
            f"train steps: {fed:,.0f} img/s",
            flush=True,
        )

        syncs = loop_syncs(
            device,
            DataSettings(data_dir=scratch, cache_dir=scratch / "cache"),
            epochs=2 if smoke else 3,
        )
        print(
            f"## 3. training loop under sync-debug 'warn': {syncs} synchronisations per "
            "epoch after the first (expected: 1 each, the metrics transfer)"
        )
        cifar = cifar_settings(args.cifar_archive, scratch / "cifar")
        if cifar is None:
            print("CIFAR-10 run skipped: no RECU_DATA_DIR/cifar10-jpeg and no --cifar-archive")
            return
        epochs = 1 if smoke else args.epochs
        config = TrainConfig.model_validate(
            {
                "recipe": "cifar10_resnet20",
                "dataset": {
                    "name": "imagefolder",
                    "root": "cifar10-jpeg",
                    "loader": "memory",
                    **({"num_train": 512, "num_test": 256} if smoke else {}),
                },
                "epochs": epochs,
                "device": str(device),
                "channels_last": not smoke,
            }
        )
        started = time.perf_counter()
        result = train(config, settings=cifar)
        final = result.final
        print(
            f"CIFAR-10 ResNet-20, official recipe over {epochs} epochs: best test acc "
            f"{final['best_test_acc']:.4f} (epoch {int(final['best_test_epoch'])}), last "
            f"{final['test_acc']:.4f}, {time.perf_counter() - started:.0f} s, "
            f"{final['images_per_s']:,.0f} img/s in the last epoch"
        )
        if not smoke and any(s > 1 for s in syncs):
            raise SystemExit("more than one host synchronisation per epoch")


if __name__ == "__main__":
    main()
