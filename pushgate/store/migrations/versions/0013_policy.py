"""policy: scheduled publishes, held/suppressed/skipped deliveries, categories, preferences,
quiet hours, frequency caps

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("publishes", sa.Column("send_at", sa.Float(), nullable=True))
    op.create_index("ix_publishes_app_status", "publishes", ["app_id", "status", "id"])
    for name in ("suppressed", "skipped", "held"):
        op.add_column("publish_stats", sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.add_column("deliveries", sa.Column("release_at", sa.Float(), nullable=True))
    op.create_table(
        "app_policies",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "categories",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("description", sa.String(500), nullable=False, server_default=""),
        sa.Column("default_opt_in", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "user_preferences",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("user", sa.String(200), primary_key=True),
        sa.Column("category", sa.String(64), primary_key=True),
        sa.Column("opted_in", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_user_preferences_category", "user_preferences", ["app_id", "category", "user"])
    op.create_table(
        "user_quiet_hours",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("user", sa.String(200), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "cap_counters",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("scope", sa.String(320), primary_key=True),
        sa.Column("window_start", sa.Float(), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("window_end", sa.Float(), nullable=False),
    )
    op.create_index("ix_cap_counters_end", "cap_counters", ["window_end"])
    op.create_table(
        "cap_marks",
        sa.Column("publish_id", sa.String(40), primary_key=True),
        sa.Column("scope", sa.String(320), primary_key=True),
        sa.Column("release_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_cap_marks_created", "cap_marks", ["created_at"])


def downgrade() -> None:
    for table in (
        "cap_marks",
        "cap_counters",
        "user_quiet_hours",
        "user_preferences",
        "categories",
        "app_policies",
    ):
        op.drop_table(table)
    op.drop_column("deliveries", "release_at")
    for name in ("held", "skipped", "suppressed"):
        op.drop_column("publish_stats", name)
    op.drop_index("ix_publishes_app_status", "publishes")
    op.drop_column("publishes", "send_at")
