"""Indexes in claim order, so a claim reads a few queued rows instead of all of them: the
queued jobs by (priority DESC, id) (the claim's order: the old (priority, id) index could
not be read in that mixed direction), by owner in that order (fair share's one probe per
owner), and by creation time (aging's probe)

Revision ID: 20261207_claim_order
Revises: 20261203_fair_share
Create Date: 2026-12-07
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "20261207_claim_order"
down_revision = "20261203_fair_share"
branch_labels = None
depends_on = None

_QUEUED = sa.text("state = 'queued'")
_PARTIAL: dict[str, Any] = {"postgresql_where": _QUEUED, "sqlite_where": _QUEUED}


def upgrade() -> None:
    op.drop_index("ix_jobs_queued", table_name="jobs")
    op.create_index("ix_jobs_queued", "jobs", [sa.text("priority DESC"), "id"], **_PARTIAL)
    op.create_index(
        "ix_jobs_queued_owner", "jobs", ["user_id", sa.text("priority DESC"), "id"], **_PARTIAL
    )
    op.create_index("ix_jobs_queued_created", "jobs", ["created_at"], **_PARTIAL)


def downgrade() -> None:
    op.drop_index("ix_jobs_queued_created", table_name="jobs")
    op.drop_index("ix_jobs_queued_owner", table_name="jobs")
    op.drop_index("ix_jobs_queued", table_name="jobs")
    op.create_index("ix_jobs_queued", "jobs", ["priority", "id"], **_PARTIAL)
