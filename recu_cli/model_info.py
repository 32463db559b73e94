"""What ``recu inspect`` says about a packed ``.bnn`` export: the manifest it carries
(recu_core/export/bnn_file.py), led by a summary of the network and where its bytes go."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any


def bnn_summary(path: Path) -> dict[str, Any]:
    """``{"sha256", "size", "summary", **manifest}`` of the ``.bnn`` file at ``path``;
    FileNotFoundError or ValueError (naming the file) for anything else."""
    from recu_core.export.bnn_file import read_bnn

    if not path.is_file():
        raise FileNotFoundError(f"no .bnn file at {path}")
    data = path.read_bytes()
    try:
        tensors, manifest = read_bnn(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    layers = manifest.get("layers", {})
    packed = {f"{name}.bits" for name in layers}
    packed_bytes = sum(t.numel() * t.element_size() for k, t in tensors.items() if k in packed)
    other_bytes = sum(t.numel() * t.element_size() for k, t in tensors.items() if k not in packed)
    summary = {
        "model": manifest.get("model"),
        "binary_layers": len(layers),
        "binary_weights": sum(_weights(spec) for spec in layers.values()),
        "packed_bits": 8 * packed_bytes,
        "packed_bytes": packed_bytes,
        "other_tensor_bytes": other_bytes,
        "folded_batchnorms": sum(1 for spec in layers.values() if spec.get("folded_batchnorm")),
        "dataset_shape": manifest.get("dataset_shape"),
        "source_sha256": manifest.get("source_sha256"),
    }
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "summary": summary,
        **manifest,
    }


def _weights(spec: dict[str, Any]) -> int:
    """The binary weights of one packed layer (its filters' elements, before packing)."""
    if spec.get("kind") == "conv2d":
        return int(spec["out_channels"] * spec["in_channels"] * math.prod(spec["kernel_size"]))
    return int(spec["out_features"] * spec["in_features"])
