"""Whether this machine has the device a local run asks for: a run given ``cuda`` (by
``--device``, ``--set device=...`` or a ``--spec`` file) trains there or is refused at
once, with a line that says why, never a traceback from deep inside torch."""

from __future__ import annotations


def device_problem(device: str) -> str | None:
    """Why ``device`` (auto, cpu, cuda, cuda:N, mps) cannot run here; None when it can."""
    import torch

    if device.startswith("cuda"):
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
        if not torch.cuda.is_available():
            return (
                f"device {device!r}: torch {torch.__version__} ({build}) finds no CUDA device "
                "on this machine; use --device cpu, or auto (CUDA when there is one)"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            return (
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        return f"device {device!r}: torch {torch.__version__} finds no Apple MPS device here"
    return None
