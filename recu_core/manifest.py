"""The reproducibility manifest of a run: what code, on what, from what data, with what
settings. Recorded once per attempt when training starts (``recu_core.provenance``
collects it), stored with the job, shown by the API (``GET /jobs/{id}/manifest``), the CLI
and the dashboard, and carried by every checkpoint and ``.bnn`` file of the run.

Plain data only (pydantic, no torch), so every layer can read it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # newer writers may add fields


class DeviceInfo(_Record):
    """Where the run computes."""

    type: str = Field(description="'cpu' or 'cuda'.")
    count: int = Field(description="Devices of that type this process sees.")
    names: list[str] = Field(description="Their names (CUDA device names; the CPU model).")
    cuda: str | None = Field(None, description="CUDA version torch was built with.")
    cudnn: str | None = Field(None, description="cuDNN version, where CUDA is used.")


class DatasetIdentity(_Record):
    """Which data the run read, as far as it can be told without reading it twice."""

    name: str
    listing_sha256: str | None = Field(
        None,
        description="sha256 over the sorted (relative path, size) listing of the source files "
        "(CIFAR batches, image-folder images); None for data with no files (digits, synthetic).",
    )
    files: int | None = Field(None, description="Source files in the listing.")
    bytes: int | None = Field(None, description="Their total size.")
    content_sha256: str | None = Field(
        None,
        description="sha256 over the decoded uint8 images and labels the run used (train, "
        "validation, test, after subsetting); None for a streamed dataset.",
    )
    train_examples: int
    val_examples: int = 0
    test_examples: int


class RunManifest(_Record):
    """What one attempt of a run was: code, environment, device, data, seed, recipe."""

    recu_version: str = Field(description="The installed recu package's version.")
    git_commit: str | None = Field(
        None, description="The commit the code runs from, when it runs from a git checkout."
    )
    git_dirty: bool | None = Field(
        None, description="Whether that checkout had uncommitted changes to tracked files."
    )
    python: str
    packages: dict[str, str] = Field(description="Versions of the packages that compute.")
    hostname: str
    device: DeviceInfo
    world_size: int = Field(description="Data-parallel ranks.")
    seed: int
    dataset: DatasetIdentity
    recipe: dict[str, Any] = Field(description="The resolved training config.")
