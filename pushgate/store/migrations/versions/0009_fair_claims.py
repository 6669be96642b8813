"""jobs (app_id, run_at, id) index: the fair claim takes each app's oldest due job in turn

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_app_run_at", "jobs", ["app_id", "run_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_app_run_at", "jobs")
