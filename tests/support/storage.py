"""Storage faults made real on a running gateway's database: a full disk or a read-only database.

Nothing of pushgate is replaced: the gateway's own connections meet the database's own errors.

- **SQLite, disk full**: ``PRAGMA max_page_count`` at the file's current size, so any write that
  needs a new page fails with ``SQLITE_FULL`` ("database or disk is full"), exactly what a full
  file system makes SQLite answer. The pragma holds per connection, and the gateway's pool keeps
  several, so it is applied each time the gateway checks a connection out of its pool (a pool
  ``checkout`` event on the gateway's engine); recovery sets the default limit back the same way.
- **SQLite, read-only**: ``PRAGMA query_only``, applied the same way: every write fails with
  ``SQLITE_READONLY`` ("attempt to write a readonly database"), as on a read-only mount. (File
  permissions would be the other way, but the tests may run as root, which ignores them.)
- **PostgreSQL, read-only**: ``ALTER DATABASE … SET default_transaction_read_only = on`` and
  every session of that database terminated, as an operator does when a disk fills or a primary
  is demoted: existing connections die (``57P01``), new ones refuse writes (``25006``). Recovery
  turns it off and terminates the sessions again so the pool reconnects writable.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from support.postgres import PostgresServer

Kind = Literal["disk_full", "read_only"]

#: SQLite's default ``max_page_count`` (the largest value every supported version accepts).
_SQLITE_MAX_PAGES = 1073741823


class SqliteFault:
    """A full disk or a read-only database for one gateway's SQLite engine."""

    def __init__(self, engine: AsyncEngine, kind: Kind) -> None:
        self.engine = engine
        self.kind: Kind = kind
        self.failing = False
        event.listen(engine.sync_engine, "checkout", self._apply)

    def _apply(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        cur = dbapi_conn.cursor()
        if self.kind == "disk_full":
            # A limit below the file's size is raised to it: "full at the current size".
            cur.execute(f"PRAGMA max_page_count = {1 if self.failing else _SQLITE_MAX_PAGES}")
        else:
            cur.execute(f"PRAGMA query_only = {1 if self.failing else 0}")
        cur.close()

    async def fail(self) -> None:
        self.failing = True

    async def recover(self) -> None:
        """Writable again from the next checkout on (the listener stays: a connection keeps the
        pragma it was last given until it is checked out again)."""
        self.failing = False


class PostgresReadOnly:
    """A PostgreSQL database switched read-only under a running gateway, and back."""

    kind: Kind = "read_only"

    def __init__(self, server: PostgresServer, database_url: str) -> None:
        self.server = server
        self.name = make_url(database_url).database
        assert self.name and self.name.isidentifier(), self.name
        self.failing = False

    async def _set(self, read_only: bool) -> None:
        admin = make_url(self.server.url_for("postgres")).set(drivername="postgresql")
        conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
        try:
            value = "on" if read_only else "off"
            await conn.execute(f'ALTER DATABASE "{self.name}" SET default_transaction_read_only = {value}')
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", self.name
            )
        finally:
            await conn.close()

    async def fail(self) -> None:
        self.failing = True
        await self._set(True)

    async def recover(self) -> None:
        """Writable again; does nothing when not failing (it terminates every session)."""
        if self.failing:
            self.failing = False
            await self._set(False)
