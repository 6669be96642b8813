"""notification-socket.io's connection ids (the compat front-end's registered connections)

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compat_connections",
        sa.Column("conn_hash", sa.String(64), primary_key=True),
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_compat_connections_expires", "compat_connections", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_compat_connections_expires", table_name="compat_connections")
    op.drop_table("compat_connections")
