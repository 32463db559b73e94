"""Fair share and wide-job reservations: users.usage / users.usage_at_s (decayed
resource usage as of Unix seconds), jobs.claimed_at (the current attempt's start, for
its running part), jobs.reserved_by / jobs.reserved_until (a worker draining its cluster
for a wide job); the queued jobs' partial index (a claim's candidates) and the
(user_id, state) index of the per-user cap's count

Revision ID: 20261203_fair_share
Revises: 20261202_exports
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "20261203_fair_share"
down_revision = "20261202_exports"
branch_labels = None
depends_on = None

_QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("usage", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("usage_at_s", sa.Float(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reserved_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("reserved_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_jobs_queued",
        "jobs",
        ["priority", "id"],
        postgresql_where=_QUEUED,
        sqlite_where=_QUEUED,
    )
    op.create_index("ix_jobs_user_state", "jobs", ["user_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_jobs_user_state", table_name="jobs")
    op.drop_index("ix_jobs_queued", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("reserved_until")
        batch.drop_column("reserved_by")
        batch.drop_column("claimed_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("usage_at_s")
        batch.drop_column("usage")
