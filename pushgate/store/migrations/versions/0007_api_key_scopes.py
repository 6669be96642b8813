"""api key names, scopes and revocation

api_keys.name, scopes (space-separated), last_used_at and revoked_at. Keys that exist before this
revision keep working as they did: they get every scope and the name ``initial``.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("name", sa.String(100), nullable=False, server_default="initial"))
        batch.add_column(
            sa.Column("scopes", sa.String(64), nullable=False, server_default="admin publish read register")
        )
        batch.add_column(sa.Column("last_used_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.Float, nullable=True))
    op.create_index("ix_api_keys_app_id", "api_keys", ["app_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_app_id", "api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")
        batch.drop_column("scopes")
        batch.drop_column("name")
