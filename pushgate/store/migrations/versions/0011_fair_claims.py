"""jobs (app_id, run_at, id) index: the fair claim takes each app's oldest due job in turn

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_app_run_at", "jobs", ["app_id", "run_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_app_run_at", "jobs")
