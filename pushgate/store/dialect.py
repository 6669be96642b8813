"""The one place where SQL differs between SQLite and PostgreSQL.

Repositories call these helpers instead of importing a dialect's ``insert`` or adding
``FOR UPDATE SKIP LOCKED`` themselves, so every other query is portable.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


def insert_ignoring_conflicts(dialect: str, table: sa.Table, index_elements: Sequence[str]) -> Insert:
    """``INSERT … ON CONFLICT (cols) DO NOTHING``: used for dedupe (deliveries, memberships)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(index_elements))


def upsert_adding(dialect: str, table: sa.Table, key: Sequence[str], add: Sequence[str]) -> Insert:
    """``INSERT … ON CONFLICT (key) DO UPDATE SET c = c + excluded.c`` without its rows: build it
    once and run it over a list of row dicts (``executemany``), so its hot callers do not pay
    for building a statement per call."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_update(
        index_elements=list(key),
        set_={name: getattr(table.c, name) + getattr(insert.excluded, name) for name in add},
    )


def upsert_replacing(
    dialect: str, table: sa.Table, key: dict[str, object], values: dict[str, object]
) -> Insert:
    """``INSERT … ON CONFLICT (key) DO UPDATE SET c = excluded.c``: write one whole row."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    stmt = insert.values({**key, **values})
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={name: getattr(stmt.excluded, name) for name in values}
    )


def upsert_many_replacing(
    dialect: str, table: sa.Table, rows: list[dict[str, object]], key: Sequence[str], replace: Sequence[str]
) -> Insert:
    """One multi-row ``INSERT … ON CONFLICT (key) DO UPDATE SET c = excluded.c`` for the ``replace``
    columns only: an existing row keeps every other column (its id, its creation time)."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    stmt = insert.values(rows)
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={name: getattr(stmt.excluded, name) for name in replace}
    )


def lock_skip_locked(dialect: str, select: sa.Select) -> sa.Select:
    """On PostgreSQL, let concurrent claimers skip each other's rows; SQLite has one writer anyway."""
    if dialect == "postgresql":
        return select.with_for_update(skip_locked=True)
    return select


def lock_rows(dialect: str, select: sa.Select, *, shared: bool = False) -> sa.Select:
    """``FOR UPDATE`` (or ``FOR SHARE``) on PostgreSQL; SQLite serialises writers anyway."""
    if dialect == "postgresql":
        return select.with_for_update(read=shared)
    return select


def placeholders(dialect: str, count: int, start: int = 1) -> list[str]:
    """Driver-level parameter markers for textual SQL run with ``exec_driver_sql``: ``?`` for
    sqlite3, ``$n`` for asyncpg. The few hottest statements skip SQLAlchemy's compiler this way."""
    if dialect == "postgresql":
        return [f"${n}" for n in range(start, start + count)]
    return ["?"] * count


def normalize_url(url: str) -> str:
    """Accept plain ``sqlite:///`` and ``postgresql://`` URLs and pick the async drivers."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url
