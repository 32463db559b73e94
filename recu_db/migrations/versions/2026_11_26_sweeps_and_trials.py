"""jobs.kind, parent_id and trial_key: sweeps are queue items, their trials child jobs

Revision ID: 20261126_sweeps
Revises: 20261126_demand
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "20261126_sweeps"
down_revision = "20261126_demand"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="train"))
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("trial_key", sa.String(64), nullable=True))
        batch.create_foreign_key(
            "fk_jobs_parent_id_jobs", "jobs", ["parent_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_unique_constraint("uq_jobs_parent_id", ["parent_id", "trial_key"])
        batch.create_index("ix_jobs_kind", ["kind"])
        batch.create_index("ix_jobs_parent_id", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_parent_id")
        batch.drop_index("ix_jobs_kind")
        batch.drop_constraint("uq_jobs_parent_id", type_="unique")
        batch.drop_constraint("fk_jobs_parent_id_jobs", type_="foreignkey")
        batch.drop_column("trial_key")
        batch.drop_column("parent_id")
        batch.drop_column("kind")
