"""Checkpoints: one safetensors file whose header carries a JSON manifest.

Tensors:   ``model.<state_dict key>`` and ``optimizer.<param index>.<state key>``
Metadata:  ``{"manifest": json}`` with the run config, completed epochs, metrics, tau,
           optimizer hyper-parameters and non-tensor state, and library versions.

Loading reads tensors and JSON only; nothing is ever unpickled. Files are written to a
temporary name and renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import Tensor, nn

FORMAT = "recu-checkpoint/1"
_MODEL = "model."
_OPTIM = "optimizer."


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds, as plain tensors and JSON values."""

    model_state: dict[str, Tensor]
    optimizer_state: dict[str, Any] | None
    manifest: dict[str, Any]


# Revision of the registered networks a manifest was written with. 1 (no key): before the
# networks followed the official files, when "resnet18" was what is now "resnet18_bireal".
NETWORKS_REVISION = 2


def upgrade_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` as the current networks read it: a revision-1 ``resnet18`` is the
    network now named ``resnet18_bireal`` (same tensors, so it would load silently into
    the new ``resnet18`` and compute something else)."""
    if manifest.get("networks", 1) >= NETWORKS_REVISION or "config" not in manifest:
        return manifest
    config = dict(manifest["config"])
    upgraded = {**manifest, "networks": NETWORKS_REVISION}
    if config.get("model") == "resnet18":
        upgraded["config"] = {**config, "model": "resnet18_bireal"}
        if upgraded.get("model") == "resnet18":  # a .bnn manifest names it at the top too
            upgraded["model"] = "resnet18_bireal"
    return upgraded


def library_versions() -> dict[str, str]:
    """Versions recorded in every manifest, for reproducibility."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("recu", "safetensors", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{_OPTIM}{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def checkpoint_to_bytes(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, manifest: dict[str, Any]
) -> bytes:
    """Serialise model (and optimizer) state and ``manifest`` into safetensors bytes."""
    tensors = {f"{_MODEL}{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    full = {
        "format": FORMAT,
        **manifest,
        "networks": NETWORKS_REVISION,
        "versions": library_versions(),
    }
    if optimizer is not None:
        optim_tensors, optim_json = _split_optimizer(optimizer.state_dict())
        tensors.update({k: v.detach().cpu().contiguous() for k, v in optim_tensors.items()})
        full["optimizer"] = optim_json
    return save_bytes(tensors, metadata={"manifest": json.dumps(full)})


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    manifest: dict[str, Any],
) -> str:
    """Write the checkpoint atomically; return the sha256 of the file's bytes."""
    data = checkpoint_to_bytes(model, optimizer, manifest)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse(data: bytes, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors and manifest from safetensors bytes; any malformed file is a ValueError."""
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a safetensors checkpoint ({err})") from None
    meta = (header.get("__metadata__") if isinstance(header, dict) else None) or {}
    if "manifest" not in meta:
        raise ValueError(f"{path} is a safetensors file without a recu manifest")
    return tensors, json.loads(meta["manifest"])


def load_checkpoint(path: str | Path, *, expected_sha256: str | None = None) -> Checkpoint:
    """Read a checkpoint; with ``expected_sha256``, refuse a file whose bytes differ.

    The file is read once: the bytes hashed are the bytes parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise ValueError(f"checkpoint {path} has sha256 {actual}, expected {expected_sha256}")
    tensors, manifest = _parse(data, path)
    manifest = upgrade_manifest(manifest)
    model_state = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    optimizer_state = None
    if "optimizer" in manifest:
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(_OPTIM):
                index, name = key[len(_OPTIM) :].split(".", 1)
                state.setdefault(int(index), {})[name] = value
        for index, scalars in manifest["optimizer"]["scalars"].items():
            state.setdefault(int(index), {}).update(scalars)
        groups = [
            {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
            for g in manifest["optimizer"]["param_groups"]
        ]  # JSON turned tuple hyper-parameters (Adam's betas) into lists
        optimizer_state = {"state": state, "param_groups": groups}
    return Checkpoint(model_state, optimizer_state, manifest)
