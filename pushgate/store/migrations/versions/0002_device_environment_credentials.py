"""device environment (APNs) and API-managed provider credentials

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("environment", sa.String(16), nullable=True))
    op.create_table(
        "credentials",
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint", sa.String(100), nullable=False),
        sa.Column("environment", sa.String(16), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "provider"),
    )


def downgrade() -> None:
    op.drop_table("credentials")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("environment")
