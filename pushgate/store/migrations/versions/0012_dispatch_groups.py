"""jobs.group_key: small dispatch jobs of one app and provider are claimed together

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs queued before this revision keep NULL: they are claimed one at a time, as before.
    op.add_column("jobs", sa.Column("group_key", sa.String(16), nullable=True))
    op.create_index("ix_jobs_group", "jobs", ["app_id", "group_key", "run_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_group", "jobs")
    op.drop_column("jobs", "group_key")
