"""Alembic environment: runs on the connection pushgate hands it (see store.db.Database.migrate)."""

from __future__ import annotations

from alembic import context

from pushgate.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - pushgate always passes a connection
    raise RuntimeError("run migrations with `pushgate migrate`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
