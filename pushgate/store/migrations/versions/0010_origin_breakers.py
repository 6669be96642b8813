"""origin breakers

origin_health: the quarantine state per (app, provider, push-service origin) for the providers
whose endpoint each device names (Web Push, WNS), so one failing origin does not park the
app's whole provider.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "origin_health",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("provider", sa.String(16), primary_key=True),
        sa.Column("origin", sa.String(320), primary_key=True),
        sa.Column("state", sa.String(12), nullable=False, server_default="closed"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cooldown", sa.Float, nullable=False, server_default="0"),
        sa.Column("open_until", sa.Float, nullable=True),
        sa.Column("probe_until", sa.Float, nullable=True),
        sa.Column("opened_at", sa.Float, nullable=True),
        sa.Column("reason_class", sa.String(24), nullable=True),
        sa.Column("reason_code", sa.String(80), nullable=True),
        sa.Column("reason_message", sa.Text, nullable=True),
        sa.Column("failed_recipient", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("origin_health")
