"""receipts on deliveries and their counts; which users acked a realtime notification

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_RECEIPTS = ("delivered", "opened", "dismissed", "clicked")


def upgrade() -> None:
    for event in _RECEIPTS:
        op.add_column("deliveries", sa.Column(f"{event}_at", sa.Float(), nullable=True))
        op.add_column("publish_stats", sa.Column(event, sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "realtime_acks",
        sa.Column("publish_id", sa.String(40), primary_key=True),
        sa.Column("user", sa.String(200), primary_key=True),
        sa.Column("acked_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("realtime_acks")
    with op.batch_alter_table("publish_stats") as batch:
        for event in _RECEIPTS:
            batch.drop_column(event)
    with op.batch_alter_table("deliveries") as batch:
        for event in _RECEIPTS:
            batch.drop_column(f"{event}_at")
