"""Service settings from the environment (prefix RECU_), validated at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECU_")

    database_url: str = Field(
        "sqlite:///var/recu.db",
        description="SQLAlchemy URL: sqlite:///path (embedded default) or "
        "postgresql+psycopg://user@host/db.",
    )
    max_workers_per_job: int = Field(8, ge=1, description="Upper bound on resources.num_workers.")
    max_gpus_per_worker: int = Field(
        1, ge=0, description="Upper bound on resources.gpus_per_worker."
    )
    page_size_limit: int = Field(200, ge=1)
    max_trials_per_sweep: int = Field(256, ge=1, description="Upper bound on a sweep's trials.")
