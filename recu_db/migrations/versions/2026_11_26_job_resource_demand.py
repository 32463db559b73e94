"""jobs.cpus and jobs.gpus: what a job needs from the cluster, so a claim can pick one that fits

Revision ID: 20261126_demand
Revises: 20261126_results
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "20261126_demand"
down_revision = "20261126_results"
branch_labels = None
depends_on = None

_jobs = sa.table(
    "jobs",
    sa.column("id", sa.Integer()),
    sa.column("spec", sa.JSON()),
    sa.column("cpus", sa.Float()),
    sa.column("gpus", sa.Float()),
)


def _demand(spec: dict) -> tuple[float, float]:
    """(cpus, gpus) of a job spec as stored at this revision (a frozen copy of the rule, so
    the migration keeps working whatever the live code becomes)."""
    resources = spec.get("resources") or {}
    n = int(resources.get("num_workers", 1))
    cpus = float(resources.get("cpus_per_worker", 1.0))
    gpus = float(max(1, resources.get("gpus_per_worker", 1))) if resources.get("use_gpu") else 0.0
    return n * cpus, n * gpus


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("cpus", sa.Float(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("gpus", sa.Float(), nullable=False, server_default="0"))
    bind = op.get_bind()
    for job_id, spec in bind.execute(sa.select(_jobs.c.id, _jobs.c.spec)).all():
        cpus, gpus = _demand(spec)
        bind.execute(_jobs.update().where(_jobs.c.id == job_id).values(cpus=cpus, gpus=gpus))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("gpus")
        batch.drop_column("cpus")
