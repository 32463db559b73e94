"""Collect a run's ``RunManifest``: versions, code commit, device, data identity, recipe.

Everything is read from the running process and its files: nothing is downloaded, and a
piece that cannot be told (no git, no CUDA) is recorded as None rather than guessed.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

from recu_core.config import TrainConfig
from recu_core.data.base import ImageDataset
from recu_core.data.identity import dataset_identity
from recu_core.data.streaming import StreamingDataset
from recu_core.manifest import DeviceInfo, RunManifest
from recu_core.settings import DataSettings

#: Packages whose versions change what a run computes or how its data is read.
PACKAGES = ("torch", "numpy", "safetensors", "pillow", "numba", "scikit-learn")
_GIT_S = 5


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """``git args`` in the folder this code is in, or None (no git, not a checkout)."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=_GIT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@cache
def code_version() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout this code runs from; (None, None) when it runs
    from an installed package (a checkout's top folder must hold this package)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or not (Path(top) / "recu_core").is_dir():
        return None, None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> DeviceInfo:
    """The device type the run computes on, how many this process sees, and their names."""
    if device.type == "cuda":
        count = torch.cuda.device_count()
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        return DeviceInfo(
            type="cuda",
            count=count,
            names=[torch.cuda.get_device_name(i) for i in range(count)],
            cuda=torch.version.cuda,
            cudnn=None if cudnn is None else str(cudnn),
        )
    return DeviceInfo(type=device.type, count=1, names=[cpu_name()])


def collect_manifest(
    config: TrainConfig,
    dataset: ImageDataset | StreamingDataset,
    device: torch.device,
    *,
    world_size: int,
    settings: DataSettings | None = None,
    list_files: bool = True,
) -> RunManifest:
    """The manifest of a run of ``config`` on ``dataset`` and ``device``; ``list_files``:
    whether ``dataset`` was loaded from ``config.dataset``'s source files (so their listing
    identifies it)."""
    commit, dirty = code_version()
    packages = {name: v for name in PACKAGES if (v := _version(name)) is not None}
    packages["torch"] = torch.__version__  # the build (+cpu, +cu128), not the dist's name
    return RunManifest(
        recu_version=_version("recu") or "unknown",
        git_commit=commit,
        git_dirty=dirty,
        python=platform.python_version(),
        packages=packages,
        hostname=socket.gethostname(),
        device=device_info(device),
        world_size=world_size,
        seed=config.seed,
        dataset=dataset_identity(
            config.dataset, dataset, settings or DataSettings(), list_files=list_files
        ),
        recipe=config.model_dump(mode="json"),
    )
