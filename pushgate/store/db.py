"""Engine, connections and migrations for both databases."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
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
from pushgate.store.faults import DISK_FULL, StorageFault, StorageUnavailable, fault_reason, short_detail
from pushgate.store.schema import storage_probe

log = logging.getLogger("pushgate.store")

MIGRATIONS = Path(__file__).with_name("migrations")
#: Bytes the write probe inserts (and deletes again): more than a page, incompressible, so the
#: probe must allocate new pages the way a growing table does (SQLite's page size is 4 KiB, a
#: PostgreSQL block 8 KiB).
PROBE_BYTES = 16384
#: Pages (4 KiB each by default) an SQLite database must still be able to grow by, counting its
#: free list, to count as writable: a chunk's outcomes take a few dozen.
SQLITE_MIN_ROOM_PAGES = 64

#: True in the tasks serving HTTP requests (:func:`serving_requests`), and while such a task
#: holds one of the requests' connections (a nested block takes no second share).
_IN_REQUEST: ContextVar[bool] = ContextVar("pushgate_db_in_request", default=False)
_HOLDING_SHARE: ContextVar[bool] = ContextVar("pushgate_db_holding_share", default=False)


@asynccontextmanager
async def serving_requests() -> AsyncIterator[None]:
    """Mark the current task as serving an HTTP request: its database connections come from the
    requests' share of the pool (:class:`Database`), so the workers keep the rest."""
    token = _IN_REQUEST.set(True)
    try:
        yield
    finally:
        _IN_REQUEST.reset(token)


class Database:
    """Owns the engine. SQLite allows one writer at a time, so writes take an in-process lock
    there instead of failing with ``database is locked`` under concurrency; PostgreSQL writes run
    in parallel.

    HTTP requests (tasks marked by :func:`serving_requests`) take at most ``pool_size`` shares
    at once (PostgreSQL's pool has ``2 * pool_size`` connections, SQLite's SQLAlchemy's 15); the
    rest stay for the workers in the same process. A share is one connection, or two while a
    request opens a read inside its own write (a few routes do; admission does not), so only
    nesting on every share at once could take the whole pool. The pool hands out connections first come,
    first served: 200 clients polling publish statuses queued ahead of every checkout a worker
    made, and each dispatch (several checkouts in a row) waited behind all of them (about one
    notification a second on PostgreSQL).
    """

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
        self._request_share = asyncio.Semaphore(pool_size)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        #: The storage fault the last failed write or probe saw; cleared only by a probe that
        #: succeeds (a write that changed nothing proves nothing about a full disk).
        self.fault: StorageFault | None = None
        self._probed_at = 0.0

    # On SQLite the connection is closed (returned to the pool) inline. SQLAlchemy's ``async with``
    # closes it in a task of its own so a cancellation cannot interrupt the close; that costs a
    # task and a loop turn per block, and meanwhile concurrent blocks check out (and the pool
    # opens and throws away) extra connections. The in-loop SQLite driver never suspends, so
    # its close cannot be interrupted anyway. PostgreSQL keeps SQLAlchemy's behaviour.

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on error.

        A storage fault (disk full, read-only, unreachable; ``store/faults.py``) is raised as
        :class:`StorageUnavailable` and remembered in :attr:`fault`; nothing was committed.
        """
        async with self._faults_as_unavailable(self._transaction()) as conn:
            yield conn

    @asynccontextmanager
    async def _faults_as_unavailable(
        self, opened: AbstractAsyncContextManager[AsyncConnection]
    ) -> AsyncIterator[AsyncConnection]:
        """``opened``'s connection, with a storage fault raised as :class:`StorageUnavailable`."""
        try:
            async with self._share(), opened as conn:
                yield conn
        except StorageUnavailable:
            raise
        except Exception as exc:
            error = self._storage_error(exc)
            if error is None:
                raise
            raise error from exc

    @asynccontextmanager
    async def _share(self) -> AsyncIterator[None]:
        """Wait for one of the requests' connections when serving a request (see the class)."""
        if not _IN_REQUEST.get() or _HOLDING_SHARE.get():
            yield
            return
        async with self._request_share:
            token = _HOLDING_SHARE.set(True)
            try:
                yield
            finally:
                _HOLDING_SHARE.reset(token)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
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
        """A connection for reads; a database that cannot be reached is a
        :class:`StorageUnavailable` like a failed write (a read-only one still reads)."""
        async with self._faults_as_unavailable(self._reading()) as conn:
            yield conn

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.connect() as conn:
                yield conn
            return
        conn = await self.engine.connect()
        try:
            yield conn
        finally:
            await conn.close()

    def _storage_error(self, exc: BaseException) -> StorageUnavailable | None:
        reason = fault_reason(exc)
        if reason is None:
            return None
        return StorageUnavailable(self._note(reason, short_detail(exc)))

    def _note(self, reason: str, detail: str) -> StorageFault:
        since = self.fault.since if self.fault is not None and self.fault.reason == reason else time.time()
        self.fault = StorageFault(reason, detail, since)
        return self.fault

    async def probe(self) -> StorageFault | None:
        """Try a real write: insert a row big enough to need new pages and commit it, then delete
        it. A full disk, a read-only database or a lost server refuses it where a one-row
        update might still pass. Clears :attr:`fault` when it passes; returns the fault otherwise.

        It commits rather than rolls back: SQLite writes a transaction's pages to the WAL only at
        its commit, so a rolled-back probe would never meet a full file system. On SQLite, a
        database within ``SQLITE_MIN_ROOM_PAGES`` of its ``max_page_count`` counts as full too:
        the probe's own row, freed again, would otherwise always find room while real writes
        fail.
        """
        self._probed_at = time.monotonic()
        try:
            async with self._transaction() as conn:
                await conn.execute(sa.insert(storage_probe).values(data=os.urandom(PROBE_BYTES)))
            async with self._transaction() as conn:
                await conn.execute(sa.delete(storage_probe))
                room = await conn.run_sync(_sqlite_room) if self.dialect == "sqlite" else None
            if room is not None and room < SQLITE_MIN_ROOM_PAGES:
                return self._note(DISK_FULL, f"{room} page(s) left under max_page_count")
        except Exception as exc:
            error = self._storage_error(exc)
            if error is None:
                # Not a storage fault (a schema not migrated yet): nothing to say about the disk.
                log.warning("the storage probe failed: %s", short_detail(exc))
                return self.fault
            return error.fault
        self.fault = None
        return None

    async def writable(self, max_age: float = 1.0) -> StorageFault | None:
        """The storage fault, probed at most every ``max_age`` seconds (``/readyz`` is polled
        by load balancers; a probe takes SQLite's write lock)."""
        if time.monotonic() - self._probed_at < max_age:
            return self.fault
        return await self.probe()

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


def _sqlite_room(conn: sa.Connection) -> int:
    """Pages the database can still use: up to ``max_page_count``, plus its free list."""

    def pragma(name: str) -> int:
        return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar() or 0)

    return pragma("max_page_count") - pragma("page_count") + pragma("freelist_count")


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
