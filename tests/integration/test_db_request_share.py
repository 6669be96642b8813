"""HTTP requests take at most their share of the connection pool; the workers keep the rest.

The pool hands out connections first come, first served. Before the share, 200 clients polling
publish statuses on PostgreSQL held or queued for all 20 connections, every checkout a worker made
waited behind them, and delivery fell to about one notification a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from pushgate.store.db import Database, serving_requests

POOL = 10


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=POOL)
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


async def test_requests_holding_connections_leave_the_workers_theirs(db: Database) -> None:
    """Three times the share of requests each hold a read as long as they can: only ``POOL`` get
    one, and a worker's transaction still gets a connection at once."""
    release = asyncio.Event()
    holding = 0

    async def request() -> None:
        nonlocal holding
        async with serving_requests(), db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
            holding += 1
            await release.wait()

    requests = [asyncio.create_task(request()) for _ in range(3 * POOL)]
    try:
        for _ in range(100):
            await asyncio.sleep(0.02)
        assert holding == POOL

        async def worker() -> int:
            async with db.write() as conn:
                return int((await conn.execute(sa.text("SELECT 2"))).scalar_one())

        assert await asyncio.wait_for(worker(), 5) == 2
    finally:
        release.set()
        await asyncio.gather(*requests)
    assert holding == 3 * POOL


async def test_a_request_nesting_a_read_in_a_write_takes_one_share(db: Database) -> None:
    """A nested block of the same request uses no second share: ``POOL`` requests that each nest
    one cannot wait on each other."""

    async def request() -> int:
        async with serving_requests(), db.write() as conn:
            await asyncio.sleep(0.05)  # every request holds its share before any nests
            async with db.read() as inner:
                return int((await inner.execute(sa.text("SELECT 1"))).scalar_one()) + 0 * id(conn)

    assert await asyncio.wait_for(asyncio.gather(*(request() for _ in range(POOL))), 10) == [1] * POOL
