"""compat front-ends' signing keys (Sockudo's auth_key and its sealed secret)

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compat_signing_keys",
        sa.Column("auth_key", sa.String(64), primary_key=True),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("system", sa.String(20), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("rotated_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_compat_signing_keys_app", "compat_signing_keys", ["app_id", "system"])


def downgrade() -> None:
    op.drop_index("ix_compat_signing_keys_app", table_name="compat_signing_keys")
    op.drop_table("compat_signing_keys")
