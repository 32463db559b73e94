"""workers: what each queue worker's Ray cluster has (its nodes, what is free), so the API
can say why a queued job has not started

Revision ID: 20261128_workers
Revises: 20261127_owners
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "20261128_workers"
down_revision = "20261127_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("free", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_workers"),
    )
    op.create_index("ix_workers_seen_at", "workers", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_workers_seen_at", "workers")
    op.drop_table("workers")
