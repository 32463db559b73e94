"""jobs.worker_cpus and jobs.worker_gpus: what one Ray Train worker of the job needs, so
a claim can skip a job that no node of the cluster could place

Revision ID: 20261202_worker_demand
Revises: 20261128_workers
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_worker_demand"
down_revision = "20261128_workers"
branch_labels = None
depends_on = None

_jobs = sa.table(
    "jobs",
    sa.column("id", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("spec", sa.JSON()),
    sa.column("worker_cpus", sa.Float()),
    sa.column("worker_gpus", sa.Float()),
)


def _per_worker(kind: str, spec: dict) -> tuple[float, float]:
    """(cpus, gpus) of one worker as the spec is stored at this revision (a frozen copy of
    the rule, so the migration keeps working whatever the live code becomes)."""
    job = (spec.get("base") or {}) if kind == "sweep" else spec
    resources = job.get("resources") or {}
    cpus = float(resources.get("cpus_per_worker", 1.0))
    gpus = float(max(1, resources.get("gpus_per_worker", 1))) if resources.get("use_gpu") else 0.0
    return cpus, gpus


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("worker_cpus", sa.Float(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("worker_gpus", sa.Float(), nullable=False, server_default="0"))
    bind = op.get_bind()
    rows = bind.execute(sa.select(_jobs.c.id, _jobs.c.kind, _jobs.c.spec)).all()
    for job_id, kind, spec in rows:
        cpus, gpus = _per_worker(kind, spec or {})
        bind.execute(
            _jobs.update().where(_jobs.c.id == job_id).values(worker_cpus=cpus, worker_gpus=gpus)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("worker_gpus")
        batch.drop_column("worker_cpus")
