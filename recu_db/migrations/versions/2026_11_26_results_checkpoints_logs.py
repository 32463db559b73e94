"""epoch telemetry, log lines, checkpoints and their chunks

Revision ID: 20261126_results
Revises: 20261126_jobs
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "20261126_results"
down_revision = "20261126_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "epoch_telemetry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("telemetry", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_epoch_telemetry_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_epoch_telemetry"),
        sa.UniqueConstraint("job_id", "epoch", name="uq_epoch_telemetry_job_id"),
    )
    op.create_index("ix_epoch_telemetry_job_id", "epoch_telemetry", ["job_id"])
    op.create_table(
        "log_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_log_lines_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_log_lines"),
    )
    op.create_index("ix_log_lines_job_id", "log_lines", ["job_id"])
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_checkpoints_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
    )
    op.create_index("ix_checkpoints_job_id", "checkpoints", ["job_id"])
    op.create_table(
        "checkpoint_chunks",
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_checkpoint_chunks_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", "seq", name="pk_checkpoint_chunks"),
    )


def downgrade() -> None:
    op.drop_table("checkpoint_chunks")
    op.drop_table("checkpoints")
    op.drop_table("log_lines")
    op.drop_table("epoch_telemetry")
