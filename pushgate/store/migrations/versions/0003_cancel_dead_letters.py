"""cancelled counter, dead-letter flag on deliveries

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("publish_stats") as batch:
        batch.add_column(sa.Column("cancelled", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("dead", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Dead letters are few; a partial index keeps listing them cheap on both databases.
    op.create_index(
        "ix_deliveries_dead",
        "deliveries",
        ["publish_id", "recipient_id"],
        postgresql_where=sa.text("dead"),
        sqlite_where=sa.text("dead"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_dead", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("dead")
    with op.batch_alter_table("publish_stats") as batch:
        batch.drop_column("cancelled")
