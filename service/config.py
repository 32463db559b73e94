"""Service settings from the environment (prefix RECU_), validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECU_")

    database_url: str = Field(
        "sqlite:///var/recu.db",
        description="SQLAlchemy URL: sqlite:///path (embedded default) or "
        "postgresql+psycopg://user@host/db.",
    )
    auth_disabled: bool = Field(
        False,
        description="Development only: no tokens, every request acts as the admin user "
        "'local'. The service warns at start-up and marks every response.",
    )
    data_dir: Path = Field(
        Path("var/data"),
        description="The workers' dataset folder (RECU_DATA_DIR): a job's dataset.root must "
        "lie inside it.",
    )
    max_workers_per_job: int = Field(8, ge=1, description="Upper bound on resources.num_workers.")
    max_gpus_per_worker: int = Field(
        1, ge=0, description="Upper bound on resources.gpus_per_worker."
    )
    max_queued_per_user: int = Field(
        100, ge=1, description="Queued jobs and sweeps a user may have at once (429 beyond)."
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    page_size_limit: int = Field(200, ge=1)
    max_trials_per_sweep: int = Field(256, ge=1, description="Upper bound on a sweep's trials.")
