"""The streaming image-folder loader against the in-memory loader, on generated JPEGs.

    .venv/bin/python -m bench.streaming_loader [--sizes 20000 40000] [--workers 2]

Writes image folders of N 256x256 JPEGs (smooth random images, 10 classes, plus a
1,000-image val split) under var/cache/bench-folders (generated here, never committed),
then, for each N, in a fresh process each:

    streaming  DatasetConfig(loader="streaming", image_size=224, workers=W): one epoch of
               random-resized crops at 224 + flips, batch 256, decoded by W workers
    memory     DatasetConfig(loader="memory", image_size=224): every image decoded once
               into memory (resized to 224x224), then one epoch of pad-crop + flip
               batches from memory

and prints images/s of the epoch, the time to open the dataset (scan + statistics, or
the whole decode), and the peak memory of the process and its workers: the sum of their
proportional set sizes (PSS; forked workers share pages, which plain RSS would count
twice), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil

ROOT = Path("var/cache/bench-folders")


def _write_one(job: tuple[str, int, int]) -> None:
    from PIL import Image

    path, seed, side = job
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)
    noisy = np.asarray(img, dtype=np.int16) + rng.integers(-12, 12, (side, side, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_jpeg_folder(root: Path, count: int, *, classes: int = 10, side: int = 256) -> Path:
    """``count`` train and min(1000, count // 10) val JPEGs of side x side under ``root``,
    written once (a folder whose marker file exists is reused)."""
    marker = root / ".complete"
    if marker.exists():
        return root
    jobs = []
    for offset, (split, n) in enumerate(
        (("train", count), ("val", max(classes, min(1000, count // 10))))
    ):
        for c in range(classes):
            (root / split / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            path = root / split / f"c{i % classes:02d}" / f"{i:07d}.jpg"
            jobs.append((str(path), offset * 10**8 + i, side))
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_one, jobs, chunksize=256))
    marker.touch()
    return root


def _measure(root: str, loader: str, workers: int) -> dict[str, float]:
    """Runs in a fresh process: open the dataset, one training epoch, peak PSS."""
    import torch

    from recu_core.config import DatasetConfig
    from recu_core.data import load_dataset, make_loader
    from recu_core.settings import DataSettings

    torch.set_num_threads(2)
    me = psutil.Process()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                procs = [me, *me.children(recursive=True)]
                total = 0
                for p in procs:
                    with_pss = p.memory_full_info()
                    total += with_pss.pss
                peak[0] = max(peak[0], total)
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    folder = Path(root)
    settings = DataSettings(data_dir=folder.parent, cache_dir=folder.parent / "cache")
    cfg = DatasetConfig(
        name="imagefolder", root=folder.name, image_size=224, loader=loader, workers=workers
    )
    started = time.perf_counter()
    data = load_dataset(cfg, settings=settings)
    opened = time.perf_counter() - started
    batches = make_loader(data, "train", batch_size=256, seed=0)
    seen, started = 0, time.perf_counter()
    for x, _ in batches.epoch(0):
        seen += x.shape[0]
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    return {"images_per_s": seen / elapsed, "open_s": opened, "peak_pss_mib": peak[0] / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 40_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        root, loader, workers = args.measure
        print(json.dumps(_measure(root, loader, int(workers))))
        return
    from bench.common import environment

    print(environment())
    print("| images | loader | img/s (one epoch, batch 256, 224x224) | open s | peak PSS MiB |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        started = time.perf_counter()
        root = make_jpeg_folder(ROOT / f"jpeg-{n}", n)
        written = time.perf_counter() - started
        print(f"<!-- {n} JPEGs ready in {written:.0f} s -->", flush=True)
        for loader in ("streaming", "memory"):
            shutil.rmtree(root.parent / "cache", ignore_errors=True)  # memory: a full decode
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.streaming_loader",
                    "--measure",
                    str(root),
                    loader,
                    str(args.workers),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            m = json.loads(out.stdout.strip().splitlines()[-1])
            name = f"streaming ({args.workers} workers)" if loader == "streaming" else "memory"
            print(
                f"| {n:,} | {name} | {m['images_per_s']:,.0f} | {m['open_s']:.1f} | "
                f"{m['peak_pss_mib']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
