"""Process-wide settings read from the environment (prefix ``RECU_``).

Paths that differ between a laptop, CI and a cluster live here rather than in
the run configuration, so one job spec runs unchanged everywhere.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where datasets are read from and where derived files are cached."""

    model_config = SettingsConfigDict(env_prefix="RECU_")

    data_dir: Path = Field(
        Path("var/data"),
        description="Root of the dataset folders (RECU_DATA_DIR); relative dataset roots "
        "are resolved against it.",
    )
    cache_dir: Path = Field(
        Path("var/cache"),
        description="Decoded-dataset cache (RECU_CACHE_DIR); safe to delete, rebuilt on demand.",
    )
    memory_loader_max_bytes: int = Field(
        4 * 2**30,
        ge=0,
        description="Largest decoded image folder (uint8 bytes, all splits) that "
        "dataset.loader 'auto' loads into memory (RECU_MEMORY_LOADER_MAX_BYTES); a larger "
        "one streams from disk.",
    )


def get_settings() -> Settings:
    """Read the settings from the environment now (not cached, so tests can set env vars)."""
    return Settings()
