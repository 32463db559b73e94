"""exports: a checkpoint packed as a .bnn file by an export job, deleted with its checkpoint

Revision ID: 20261202_exports
Revises: 20261202_worker_demand
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_exports"
down_revision = "20261202_worker_demand"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_exports_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_exports_job_id_jobs", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_exports"),
        sa.UniqueConstraint("checkpoint_id", name="uq_exports_checkpoint_id"),
    )


def downgrade() -> None:
    op.drop_table("exports")
