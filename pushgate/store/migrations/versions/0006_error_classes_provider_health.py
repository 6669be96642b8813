"""error classes and provider health

deliveries.error_class, jobs.deferred_by and jobs.deferrals; provider_health (quarantine state per app and
provider) and provider_events (the rolling window of answers per class).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("error_class", sa.String(24), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("deferred_by", sa.String(16), nullable=True))
        batch.add_column(sa.Column("deferrals", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "provider_health",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("provider", sa.String(16), primary_key=True),
        sa.Column("state", sa.String(12), nullable=False, server_default="closed"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cooldown", sa.Float, nullable=False, server_default="0"),
        sa.Column("open_until", sa.Float, nullable=True),
        sa.Column("probe_until", sa.Float, nullable=True),
        sa.Column("opened_at", sa.Float, nullable=True),
        sa.Column("reason_class", sa.String(24), nullable=True),
        sa.Column("reason_code", sa.String(80), nullable=True),
        sa.Column("reason_message", sa.Text, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "provider_events",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("provider", sa.String(16), primary_key=True),
        sa.Column("minute", sa.Integer, primary_key=True),
        sa.Column("error_class", sa.String(24), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("provider_events")
    op.drop_table("provider_health")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("deferrals")
        batch.drop_column("deferred_by")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("error_class")
