"""run_manifests: each attempt's reproducibility manifest (code, device, data, recipe)

Revision ID: 20261208_run_manifests
Revises: 20261207_claim_order
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "20261208_run_manifests"
down_revision = "20261207_claim_order"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_manifests",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_run_manifests_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "attempt", name="pk_run_manifests"),
    )


def downgrade() -> None:
    op.drop_table("run_manifests")
