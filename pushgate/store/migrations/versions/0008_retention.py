"""retention: an index on the time each app's publishes closed

The retention sweep (store/retention.py) looks for an app's oldest closed publishes in every
batch; without the index each batch would scan the publishes table.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_publishes_retention", "publishes", ["app_id", "completed_at"])


def downgrade() -> None:
    op.drop_index("ix_publishes_retention", "publishes")
