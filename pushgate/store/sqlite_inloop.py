"""SQLite driven from the event-loop thread: the stdlib ``sqlite3`` module under SQLAlchemy's
asyncio extension, without aiosqlite's worker thread.

Why: aiosqlite runs every call (cursor, execute, fetch, close, commit) on its own thread and
hands the result back through ``call_soon_threadsafe``. Each of those hops costs far more CPU
than the SQLite work of a typical pushgate statement (a primary-key update, a one-row read),
and a statement makes three or four of them. Profiled on the e2e benchmark, the hops were a
quarter of pushgate's CPU (docs/performance.md). Here the calls run inline: SQLAlchemy's
greenlet bridge still gives the ``await conn.execute(...)`` API, but nothing ever waits for
another thread.

The price: a statement blocks the event loop while it runs. pushgate's statements are indexed
and short (well under a millisecond; a planner page of 2,000 devices a few milliseconds), and
writes inside the process are serialised by ``Database.write``'s lock anyway, so SQLite's busy
handler only waits when *another process* holds the write lock (a CLI command writing to the
same file) — that wait blocks the loop for as long as the other writer's transaction lasts.

Selected with ``sqlite+pushgate://`` URLs; ``store.db.Database`` uses it for every SQLite URL.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.util.concurrency import await_, in_greenlet

DRIVER = "pushgate"


async def _ready() -> None:
    return None


class _Cursor(sqlite3.Cursor):
    """A ``sqlite3`` cursor that tells SQLAlchemy's asyncio bridge it ran "asynchronously".

    ``AsyncConnection.execute`` insists that the driver awaited something (a guard against sync
    drivers used by mistake); awaiting an already-finished coroutine satisfies it for the price of
    one greenlet switch, without ever yielding to the event loop.
    """

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        if in_greenlet():
            await_(_ready())
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _Cursor:
        if in_greenlet():
            await_(_ready())
        return super().executemany(sql, seq_of_parameters)

    async def _async_soft_close(self) -> None:
        """Called by the asyncio result wrapper; a sqlite3 cursor needs no async close."""


class _Connection(sqlite3.Connection):
    def cursor(self, factory: Any = _Cursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)


class SQLiteDialect_inloop(SQLiteDialect_pysqlite):
    """The pysqlite dialect, declared async so ``create_async_engine`` accepts it.

    The DBAPI calls are plain blocking ``sqlite3`` calls made from inside SQLAlchemy's greenlet;
    they never ``await``, so they complete without leaving the event-loop thread.
    """

    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return sqlite3

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        # Connections are only used from the loop's thread, but pool disposal at interpreter
        # exit or a test harness may touch them from another one.
        kwargs["check_same_thread"] = False
        kwargs["factory"] = _Connection
        return args, kwargs


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inloop")
