"""A fresh, empty database of either kind for one gateway: every store-touching test runs once on
SQLite and once on PostgreSQL, because the two differ in locking, types and SQL dialect."""

from __future__ import annotations

import contextlib
import pathlib
import uuid
from collections.abc import Callable, Iterator

from support.postgres import PostgresServer

KINDS = ("sqlite", "postgresql")


@contextlib.contextmanager
def fresh_database(
    kind: str, directory: pathlib.Path, postgres: Callable[[], PostgresServer]
) -> Iterator[str]:
    """Yield the SQLAlchemy URL of a new database: a file in ``directory`` for SQLite, a new
    database on the session's server (``postgres()``, started on first use) for PostgreSQL,
    dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'pushgate.db'}"
        return
    server = postgres()
    name = "t_" + uuid.uuid4().hex[:12]
    url = server.create_database(name)
    yield url
    try:
        server.drop_database(name)
    except Exception:
        pass
