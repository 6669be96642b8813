"""audience filters, templates, campaigns: device app versions and filter indexes, versioned
templates, publish campaign/labels/client ids/dry runs, dry-run samples

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: Device indexes the filter language uses (docs/filters.md): each selective predicate is an
#: index range within one app.
_DEVICE_INDEXES = {
    "ix_devices_app_provider": ["app_id", "provider", "id"],
    "ix_devices_app_locale": ["app_id", "locale"],
    "ix_devices_app_version": ["app_id", "app_version_key"],
    "ix_devices_app_seen": ["app_id", "last_seen_at"],
    "ix_devices_app_created": ["app_id", "created_at"],
}


def upgrade() -> None:
    op.add_column("devices", sa.Column("app_version", sa.String(64), nullable=True))
    op.add_column("devices", sa.Column("app_version_key", sa.String(120), nullable=True))
    for name, cols in _DEVICE_INDEXES.items():
        op.create_index(name, "devices", cols)
    op.add_column("publishes", sa.Column("campaign", sa.String(200), nullable=True))
    op.add_column("publishes", sa.Column("labels", sa.Text(), nullable=True))
    op.add_column("publishes", sa.Column("client_id", sa.String(200), nullable=True))
    op.add_column("publishes", sa.Column("dry_run", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_publishes_app_campaign", "publishes", ["app_id", "campaign", "id"])
    op.create_index("uq_publishes_client_id", "publishes", ["app_id", "client_id"], unique=True)
    op.add_column("publish_stats", sa.Column("dry_run", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "templates",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=True),
    )
    op.create_table(
        "publish_samples",
        sa.Column("publish_id", sa.String(40), primary_key=True),
        sa.Column("provider", sa.String(16), primary_key=True),
        sa.Column("locale", sa.String(35), primary_key=True),
        sa.Column("payload", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("publish_samples")
    op.drop_table("templates")
    op.drop_column("publish_stats", "dry_run")
    op.drop_index("uq_publishes_client_id", "publishes")
    op.drop_index("ix_publishes_app_campaign", "publishes")
    for name in ("dry_run", "client_id", "labels", "campaign"):
        op.drop_column("publishes", name)
    for name in _DEVICE_INDEXES:
        op.drop_index(name, "devices")
    op.drop_column("devices", "app_version_key")
    op.drop_column("devices", "app_version")
