"""A trained model's files as the command line handles them: evaluate a checkpoint (or a
packed ``.bnn`` export, on the 1-bit engine) on its dataset, and export a checkpoint to
``.bnn`` atomically. ``recu evaluate`` / ``recu export`` print what these return."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from recu_core.config import DatasetConfig
from recu_core.settings import DataSettings


@dataclass(frozen=True)
class Evaluation:
    """Test accuracy of a model file on the test split of the dataset it was trained on."""

    accuracy: float
    dataset: str


def evaluate_file(
    path: Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
    settings: DataSettings | None = None,
    engine: str = "fast",
) -> Evaluation:
    """Evaluate a checkpoint on ``device``, or a ``.bnn`` export on the CPU's 1-bit
    ``engine`` (fast or reference, docs/export.md);
    ``data_root`` is where the dataset is now, if not where the run found it.
    Raises DatasetError, ValueError (also for a manifest that lacks a key),
    FileNotFoundError or RuntimeError with a message that names the problem."""
    from recu_core.checkpoint import load_checkpoint
    from recu_core.data import load_dataset
    from recu_core.export.bnn_file import load_packed_model, read_bnn
    from recu_core.train import evaluate_accuracy, load_trained_model

    packed = path.suffix == ".bnn"
    try:
        if packed:
            raw = path.read_bytes()
            manifest = read_bnn(raw)[1]
        else:
            ckpt = load_checkpoint(path)
            manifest = ckpt.manifest
        data_cfg = DatasetConfig.model_validate(manifest["config"]["dataset"])
        expected_shape = manifest["dataset_shape"]
    except KeyError as err:
        raise ValueError(f"manifest lacks {err}") from None
    if data_root is not None:
        data_cfg = data_cfg.model_copy(update={"root": data_root})
    data = load_dataset(data_cfg, settings=settings)
    shape = {
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "image_size": data.image_size,
    }
    if shape != expected_shape:
        raise ValueError(f"dataset shape {shape} differs from the checkpoint's {expected_shape}")
    model = load_packed_model(raw, engine=engine) if packed else load_trained_model(ckpt)
    accuracy = evaluate_accuracy(model, data, device="cpu" if packed else device)
    return Evaluation(accuracy=accuracy, dataset=data_cfg.name)


def export_file(
    checkpoint: Path, output: Path, *, expected_sha256: str | None = None
) -> tuple[int, int]:
    """Write the ``.bnn`` export of ``checkpoint`` to ``output`` (never half-written: a
    temporary file moved into place), its sha256 checked first when given; returns the
    (checkpoint, export) sizes in bytes. Raises ValueError or FileNotFoundError."""
    from recu_core.export.bnn_file import export_checkpoint

    data = export_checkpoint(checkpoint, expected_sha256=expected_sha256)
    partial = output.with_name(f".{output.name}.part")
    partial.write_bytes(data)
    os.replace(partial, output)
    return checkpoint.stat().st_size, len(data)
