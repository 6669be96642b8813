"""Engine, connections and migrations for both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pushgate.store import sqlite_inloop
from pushgate.store.dialect import normalize_url

MIGRATIONS = Path(__file__).with_name("migrations")


class Database:
    """Owns the engine. SQLite allows one writer at a time, so writes take an in-process lock
    there instead of failing with ``database is locked`` under concurrency; PostgreSQL writes run
    in parallel."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        engine_url: str | sa.URL = self.url
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            # SQLite runs on the event loop's thread (store/sqlite_inloop.py): aiosqlite's
            # thread hops cost more than the statements themselves.
            engine_url = parsed.set(drivername=f"sqlite+{sqlite_inloop.DRIVER}")
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
        # hide_parameters: statement parameters (device tokens in job payloads) never reach logs
        # through a database error's message.
        self.engine: AsyncEngine = create_async_engine(engine_url, hide_parameters=True, **kwargs)
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    # On SQLite the connection is closed (returned to the pool) inline. SQLAlchemy's ``async with``
    # closes it in a task of its own so a cancellation cannot interrupt the close; that costs a
    # task and a loop turn per block, and meanwhile concurrent blocks check out (and the pool
    # opens and throws away) extra connections. The in-loop SQLite driver never suspends, so
    # its close cannot be interrupted anyway. PostgreSQL keeps SQLAlchemy's behaviour.

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on error."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            conn = await self.engine.connect()
            try:
                await conn.begin()
                try:
                    yield conn
                except BaseException:
                    await conn.rollback()
                    raise
                await conn.commit()
            finally:
                await conn.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.connect() as conn:
                yield conn
            return
        conn = await self.engine.connect()
        try:
            yield conn
        finally:
            await conn.close()

    async def ping(self) -> bool:
        try:
            async with self.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        async with self.write() as conn:
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(sync_conn: sa.Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
