"""indexes for the stuck-publish sweep and for pruning inactive devices

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_publishes_status", "publishes", ["status"])
    op.create_index("ix_devices_last_seen", "devices", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_devices_last_seen", "devices")
    op.drop_index("ix_publishes_status", "publishes")
