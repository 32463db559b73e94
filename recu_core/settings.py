"""Every setting read from the environment, one class per concern (pydantic-settings).

Each field names its environment variable (``RECU_...``, and Ray's own ``RAY_ADDRESS``) and
is read from that variable only; an empty variable counts as unset. Code passes fields by
name (``WorkerSettings(lease_s=30)``). An entry point builds the classes it needs and
passes them inward; nothing below it reads the environment. Importing this module imports
neither torch nor ray, so every layer may use it.

==================  ==========================================  ==============================
class               what                                        built by
==================  ==========================================  ==============================
DataSettings        dataset folders, decoded cache, loader      ``recu train``/``evaluate``;
                                                                the jobs on the Ray workers
DatabaseSettings    the queue's database URL and pool           ``recu token``
ServiceSettings     the API (and its database)                  ``recu serve``, ``create_app``
WorkerSettings      a queue worker (and its database)           ``recu worker``
ClientSettings      the HTTP client commands                    ``recu submit``, ``jobs``, ...
==================  ==========================================  ==============================

Paths that differ between a laptop, CI and a cluster live here rather than in the run
configuration, so one job spec runs unchanged everywhere.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EnvSettings(BaseSettings):
    """Settings whose fields are given by name in code and read from the environment
    variable their ``validation_alias`` names (nothing else: no field-name fallback)."""

    model_config = SettingsConfigDict(env_prefix="RECU_", env_ignore_empty=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        super().__init__(**{env_name(type(self), key, key): v for key, v in values.items()})


def env_name(settings: type[BaseSettings], field: str, default: str | None = None) -> str:
    """The environment variable ``field`` of ``settings`` is read from."""
    info = settings.model_fields.get(field)
    if info is None or not isinstance(info.validation_alias, str):
        if default is None:
            raise KeyError(f"{settings.__name__} has no field {field!r} read from the environment")
        return default
    return info.validation_alias


DataDir = Annotated[
    Path,
    Field(
        Path("var/data"),
        validation_alias="RECU_DATA_DIR",
        description="Root of the dataset folders: relative dataset roots resolve against it, "
        "and the API and the workers refuse a job whose dataset.root leaves it.",
    ),
]


class DataSettings(EnvSettings):
    """Where datasets are read from and where derived files are cached."""

    data_dir: DataDir
    cache_dir: Path = Field(
        Path("var/cache"),
        validation_alias="RECU_CACHE_DIR",
        description="Decoded-dataset cache; safe to delete, rebuilt on demand.",
    )
    memory_loader_max_bytes: int = Field(
        4 * 2**30,
        ge=0,
        validation_alias="RECU_MEMORY_LOADER_MAX_BYTES",
        description="Largest decoded image folder (uint8 bytes, all splits) that "
        "dataset.loader 'auto' loads into memory; a larger one streams from disk.",
    )


class DatabaseSettings(EnvSettings):
    """The queue's database, and the connection pool each process keeps on it."""

    database_url: str = Field(
        "sqlite:///var/recu.db",
        validation_alias="RECU_DATABASE_URL",
        description="SQLAlchemy URL: sqlite:///path (embedded default) or "
        "postgresql+psycopg://user@host/db.",
    )
    db_pool_size: int = Field(
        32,
        ge=1,
        validation_alias="RECU_DB_POOL_SIZE",
        description="Connections kept open (PostgreSQL: processes x (pool + overflow) must "
        "stay under max_connections).",
    )
    db_max_overflow: int = Field(
        8,
        ge=0,
        validation_alias="RECU_DB_MAX_OVERFLOW",
        description="Connections opened beyond the pool in a burst, closed when returned.",
    )
    db_pool_timeout_s: float = Field(
        5.0,
        gt=0,
        validation_alias="RECU_DB_POOL_TIMEOUT_S",
        description="Longest wait for a free pooled connection; the API answers 503 with "
        "Retry-After beyond it (never a wait as long as a client's time-out).",
    )

    def pool(self) -> dict[str, int]:
        """The pool keywords of ``recu_db.engine.make_engine``."""
        return {"pool_size": self.db_pool_size, "max_overflow": self.db_max_overflow}


class ServiceSettings(DatabaseSettings):
    """The API process: its database (DatabaseSettings), its limits and its server."""

    auth_disabled: bool = Field(
        False,
        validation_alias="RECU_AUTH_DISABLED",
        description="Development only: no tokens, every request acts as the admin user "
        "'local'. The service warns at start-up and marks every response.",
    )
    auth_cache_s: float = Field(
        5.0,
        ge=0,
        le=300,
        validation_alias="RECU_AUTH_CACHE_S",
        description="Seconds an API process keeps a live token's look-up (0: none): a "
        "revoked token stops working within this bound.",
    )
    data_dir: DataDir
    max_workers_per_job: int = Field(
        8,
        ge=1,
        validation_alias="RECU_MAX_WORKERS_PER_JOB",
        description="Upper bound on resources.num_workers.",
    )
    max_gpus_per_worker: int = Field(
        1,
        ge=0,
        validation_alias="RECU_MAX_GPUS_PER_WORKER",
        description="Upper bound on resources.gpus_per_worker.",
    )
    max_queued_per_user: int = Field(
        100,
        ge=1,
        validation_alias="RECU_MAX_QUEUED_PER_USER",
        description="Queued jobs and sweeps a user may have at once (429 beyond).",
    )
    max_request_bytes: int = Field(
        1_048_576,
        ge=1024,
        validation_alias="RECU_MAX_REQUEST_BYTES",
        description="Largest request body accepted (413 beyond).",
    )
    page_size_limit: int = Field(
        200,
        ge=1,
        validation_alias="RECU_PAGE_SIZE_LIMIT",
        description="Largest page GET /jobs and GET /sweeps return.",
    )
    max_trials_per_sweep: int = Field(
        256,
        ge=1,
        validation_alias="RECU_MAX_TRIALS_PER_SWEEP",
        description="Upper bound on a sweep's trials.",
    )
    reject_unschedulable: bool = Field(
        False,
        validation_alias="RECU_REJECT_UNSCHEDULABLE",
        description="Refuse (422) a job or sweep that no node of the workers' clusters can "
        "ever place; off: it is queued with a pending_reason.",
    )
    api_workers: int = Field(
        1,
        ge=1,
        validation_alias="RECU_API_WORKERS",
        description="Server processes on the one port (each with its own database pool).",
    )
    api_nice: int = Field(
        0,
        ge=0,
        le=19,
        validation_alias="RECU_API_NICE",
        description="The API processes' nice value (Linux/macOS): above 0 they yield the "
        "CPU to training on a shared machine (it only matters when the CPU is contended).",
    )
    api_access_log: bool = Field(
        True,
        validation_alias="RECU_API_ACCESS_LOG",
        description="One log line per request (off saves CPU under heavy load).",
    )
    api_max_in_flight: int | None = Field(
        None,
        ge=1,
        validation_alias="RECU_API_MAX_IN_FLIGHT",
        description="Requests one API process serves at once (each holds at most one "
        "database connection and one thread); unset: db_pool_size + db_max_overflow, so "
        "none waits for a connection (set higher, they may, up to db_pool_timeout_s, then "
        "503). Beyond it a request waits up to api_admission_wait_s, then gets 503 + "
        "Retry-After.",
    )
    api_admission_wait_s: float = Field(
        5.0,
        ge=0,
        validation_alias="RECU_API_ADMISSION_WAIT_S",
        description="Longest a request waits (without a thread) for an in-flight slot "
        "before 503 with Retry-After.",
    )

    api_max_rate: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        validation_alias="RECU_API_MAX_RATE",
        description="Requests one API process starts per second at most (paced in "
        "arrival order; one that would wait over api_admission_wait_s gets 503 + "
        "Retry-After): bounds the API's CPU share on a machine shared with training; "
        "unset: no ceiling.",
    )

    api_max_streams: int = Field(
        256,
        ge=1,
        le=100_000,
        validation_alias="RECU_API_MAX_STREAMS",
        description="Live streams (GET /jobs/{id}/stream) one API process serves at once; "
        "beyond, 503 + Retry-After. Streams sit outside the admission limit: an open "
        "stream holds no slot, thread or connection between its reads.",
    )
    api_stream_poll_s: float = Field(
        0.5,
        ge=0.05,
        le=10,
        validation_alias="RECU_API_STREAM_POLL_S",
        description="Seconds between a live stream's reads of the database: an event "
        "reaches a client within about this much of its commit.",
    )

    def max_in_flight(self) -> int:
        """The admission limit; by default one request per pooled connection, so an
        admitted request never waits for a connection held by another admitted one."""
        return self.api_max_in_flight or self.db_pool_size + self.db_max_overflow


def _worker_name() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class WorkerSettings(DatabaseSettings):
    """A queue worker: its database (DatabaseSettings), the Ray cluster it runs jobs on,
    where Ray keeps the runs, how many jobs it runs at once and how it holds their leases.

    ``lease_s`` is a job's lease, renewed every third of it: a dead worker's job is requeued
    this long after its last heartbeat, and a database outage is ridden out for this long.
    ``poll_s`` is how often an idle slot reaps expired leases and looks for a job;
    ``max_failures`` the Ray Train restarts of a job's worker group after a worker dies.
    """

    ray_address: str | None = Field(
        None,
        validation_alias="RAY_ADDRESS",
        description="The Ray cluster; unset: a local Ray instance; 'auto': this node's.",
    )
    runs_dir: str | Path = Field(
        "var/ray-runs",
        validation_alias="RECU_RUNS_DIR",
        description="Ray's own storage for the runs: a path every Ray node sees, or an "
        "object-store URI such as s3://bucket/recu (checkpoints live in the database).",
    )
    concurrency: int = Field(
        1,
        ge=1,
        validation_alias="RECU_WORKER_CONCURRENCY",
        description="Jobs (or sweeps) run at once at most, as the cluster's resources allow.",
    )
    lease_s: float = Field(
        60.0, gt=0, validation_alias="RECU_WORKER_LEASE_S", description="A job's lease (s)."
    )
    poll_s: float = Field(
        1.0,
        gt=0,
        validation_alias="RECU_WORKER_POLL_S",
        description="How often an idle slot reaps and looks for a job (s).",
    )
    max_failures: int = Field(
        1,
        ge=0,
        validation_alias="RECU_WORKER_MAX_FAILURES",
        description="Ray Train restarts of a job's worker group after a worker dies.",
    )
    warm_ranks: bool = Field(
        True,
        validation_alias="RECU_WORKER_WARM_RANKS",
        description="Run one-rank jobs on a long-lived Ray actor kept between jobs (torch "
        "and the data stay loaded); off: a fresh Ray Train trainer per job, as multi-rank "
        "jobs and sweep trials always have.",
    )
    fair_share: bool = Field(
        True,
        validation_alias="RECU_FAIR_SHARE",
        description="Claim the job of the user with the least decayed usage first (then "
        "priority, then age); off: priority, then age.",
    )
    fair_share_half_life_s: float = Field(
        7 * 86_400.0,
        gt=0,
        validation_alias="RECU_FAIR_SHARE_HALF_LIFE_S",
        description="Half-life of a user's usage (s): work done this long ago counts half.",
    )
    fair_share_cpu_weight: float = Field(
        0.125,
        ge=0,
        validation_alias="RECU_FAIR_SHARE_CPU_WEIGHT",
        description="Usage of one CPU of a CPU-only job, in GPUs (0.125: 8 CPUs weigh as one GPU).",
    )
    fair_share_age_s: float = Field(
        86_400.0,
        ge=0,
        validation_alias="RECU_FAIR_SHARE_AGE_S",
        description="A job that has waited this long (s) goes before every user's newer "
        "jobs, whatever its owner's usage (0: no aging).",
    )
    reserve_after_s: float = Field(
        600.0,
        ge=0,
        validation_alias="RECU_RESERVE_AFTER_S",
        description="A job that has waited this long (s) and does not fit what is free is "
        "reserved by a worker whose cluster can hold it, which then starts nothing else "
        "until it fits (0: never reserve; smaller jobs always backfill).",
    )
    name: str = Field(
        default_factory=_worker_name,
        min_length=1,
        validation_alias="RECU_WORKER_NAME",
        description="The worker's name in leases and events; default HOSTNAME-<8 hex>.",
    )


class ClientSettings(EnvSettings):
    """The client commands: which service they talk to, and as whom."""

    api_url: str = Field(
        "http://127.0.0.1:8000", validation_alias="RECU_API_URL", description="The service."
    )
    api_token: str | None = Field(
        None,
        validation_alias="RECU_API_TOKEN",
        description="The bearer token sent with every request (from `recu token create`).",
    )


#: Every settings class, for the checks that each variable is documented (.env.example).
ALL_SETTINGS: tuple[type[EnvSettings], ...] = (
    DataSettings,
    DatabaseSettings,
    ServiceSettings,
    WorkerSettings,
    ClientSettings,
)
