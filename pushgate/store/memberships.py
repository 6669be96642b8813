"""What a device belongs to: its channels and its tags, written in the caller's transaction.

Registration, bulk update, subscription and user bindings all change these rows. One set of
writers keeps the chunking, the channel dedupe and the limits in one place. Every function
here runs inside the caller's transaction, so it takes ``conn`` first.

Why the chunking is by rows, not by devices: one request can expand into many rows (a user's
1,000 channel bindings applied to the user's 1,000 devices is a million), and SQLite runs on the
event loop's thread (``store/sqlite_inloop.py``), so one statement of a million rows froze every
request of every app for seconds. Here no statement inserts more than :data:`ROWS` or deletes
more than :data:`DELETE_ROWS` rows (a few milliseconds each, measured), and the writers yield to
the loop between statements. The whole change still commits in the caller's one transaction
(all or nothing: a crash halfway leaves nothing of it), and :func:`bounded` keeps that
transaction small: it refuses a request that would change more than ``limits.max_rows_per_request``
rows, and one that would leave a device in more than ``limits.max_channels_per_device``
channels, before anything commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.schema import device_channels, device_tags

ChannelOp = Literal["add", "remove", "set"]

#: Device ids per ``IN (…)`` list: far below SQLite's and asyncpg's limit of 32,766 bound
#: parameters per statement, with a list of up to 1,000 channels beside it.
CHUNK = 500
#: Rows per multi-row insert: about 2.5 ms of SQLite on the development machine (5,000 rows
#: took 57 ms, 500 rows 2-4 ms).
ROWS = 500
#: Rows per delete (about 2 ms for 2,000 rows).
DELETE_ROWS = 2000

_T = TypeVar("_T")


def chunks(items: list[_T], n: int = CHUNK) -> Iterable[list[_T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


@dataclass(frozen=True, slots=True)
class Caps:
    """The limits every membership change is held to (``[limits]``, docs/configuration.md)."""

    #: Channels one device may be in, its own and its user's bound ones together; also the most
    #: channels one user may be bound to (each binding lands on every device of the user).
    channels_per_device: int = 1000
    #: Rows (devices, channel memberships, tags, bindings) one request may write or delete
    #: (0: no limit).
    rows_per_request: int = 50_000


class TooManyRows(Exception):
    """The request would change more than ``Caps.rows_per_request`` rows; nothing was committed.
    ``wanted``: how many it would change, when that was known before writing."""

    def __init__(self, limit: int, wanted: int | None = None) -> None:
        super().__init__(limit, wanted)
        self.limit = limit
        self.wanted = wanted


class TooManyChannels(Exception):
    """A device (or a user's bindings) would pass ``Caps.channels_per_device``; nothing was
    committed. ``what`` names it (``device 'dev_…'``, ``user 'alice'``)."""

    def __init__(self, what: str, count: int, limit: int) -> None:
        super().__init__(what, count, limit)
        self.what = what
        self.count = count
        self.limit = limit


@dataclass(slots=True)
class Writes:
    """What one bounded transaction has changed so far: its row count and the devices that
    gained channels (checked against the per-device cap before the commit)."""

    caps: Caps
    rows: int = 0
    grown: set[str] = field(default_factory=set)

    def spend(self, n: int) -> None:
        self.rows += n
        limit = self.caps.rows_per_request
        if limit and self.rows > limit:
            raise TooManyRows(limit)

    async def check(self, conn: AsyncConnection) -> None:
        """Raise :class:`TooManyChannels` for the first grown device over the cap."""
        cap = self.caps.channels_per_device
        # Each count reads at most cap + (what this request added) index entries per device.
        per_query = max(1, min(CHUNK, 20_000 // max(cap, 1)))
        for some in chunks(sorted(self.grown), per_query):
            n = sa.func.count().label("n")
            row = (
                await conn.execute(
                    sa.select(device_channels.c.device_id, n)
                    .where(device_channels.c.device_id.in_(some))
                    .group_by(device_channels.c.device_id)
                    .having(n > cap)
                    .limit(1)
                )
            ).first()
            if row is not None:
                raise TooManyChannels(f"device {row.device_id!r}", row.n, cap)
            await asyncio.sleep(0)


_WRITES: ContextVar[Writes | None] = ContextVar("pushgate_membership_writes", default=None)


@asynccontextmanager
async def bounded(db: Database, caps: Caps) -> AsyncIterator[AsyncConnection]:
    """``db.write()`` for a request that changes devices and memberships: the writers here count
    its rows against ``caps.rows_per_request`` as they go (:class:`TooManyRows`), and before the
    commit every device that gained channels is checked against ``caps.channels_per_device``
    (:class:`TooManyChannels`). Either rolls the whole request back."""
    writes = Writes(caps)
    token = _WRITES.set(writes)
    try:
        async with db.write() as conn:
            yield conn
            await writes.check(conn)
    finally:
        _WRITES.reset(token)


def expect(n: int) -> None:
    """Refuse at once a step known to change ``n`` more rows than the request has left, rather
    than write up to the limit and roll it all back."""
    writes = _WRITES.get()
    if writes is not None:
        limit = writes.caps.rows_per_request
        if limit and writes.rows + n > limit:
            raise TooManyRows(limit, writes.rows + n)


async def spent(n: int, *, grown: Iterable[str] = ()) -> None:
    """Count ``n`` rows against the request's limit (and the devices that gained channels), then
    let the event loop run: every writer calls this after each statement."""
    writes = _WRITES.get()
    if writes is not None:
        writes.spend(n)
        writes.grown.update(grown)
    await asyncio.sleep(0)


async def insert_rows(conn: AsyncConnection, stmt: Any, rows: Iterable[dict[str, Any]]) -> int:
    """Execute ``stmt`` for ``rows``, :data:`ROWS` at a time; answers how many were given."""
    total = 0
    for part in _slices(rows, ROWS):
        await conn.execute(stmt, part)
        total += len(part)
        await spent(len(part))
    return total


async def delete_rows(conn: AsyncConnection, table: sa.Table, *where: Any) -> int:
    """``DELETE FROM table WHERE …`` at most :data:`DELETE_ROWS` rows per statement (by primary
    key, through a limited subquery both databases run from an index); answers the count."""
    key = sa.tuple_(*table.primary_key.columns)
    total = 0
    while True:
        some = sa.select(*table.primary_key.columns).where(*where).limit(DELETE_ROWS)
        res = await conn.execute(sa.delete(table).where(key.in_(some)))
        total += res.rowcount
        await spent(res.rowcount)
        if res.rowcount < DELETE_ROWS:
            return total


def _slices(rows: Iterable[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    part: list[dict[str, Any]] = []
    for row in rows:
        part.append(row)
        if len(part) == n:
            yield part
            part = []
    if part:
        yield part


def _membership_insert(conn: AsyncConnection) -> Any:
    return insert_ignoring_conflicts(conn.dialect.name, device_channels, ("app_id", "channel", "device_id"))


async def change_channels(
    conn: AsyncConnection, app_id: str, dev_ids: list[str], op: ChannelOp, channels: list[str]
) -> None:
    """Add, remove or set the same ``channels`` on every device of ``dev_ids``.

    Adding ignores memberships that already exist, so overlapping sources (the device's own
    subscriptions and its user's bindings) never conflict.
    """
    wanted = list(dict.fromkeys(channels))
    for chunk in chunks(dev_ids):
        if op == "set":
            await delete_rows(conn, device_channels, device_channels.c.device_id.in_(chunk))
        if op == "remove":
            if wanted:
                await delete_rows(
                    conn,
                    device_channels,
                    device_channels.c.device_id.in_(chunk),
                    device_channels.c.channel.in_(wanted),
                )
            continue
        if wanted:
            rows = ({"app_id": app_id, "channel": c, "device_id": d} for d in chunk for c in wanted)
            await insert_rows(conn, _membership_insert(conn), rows)
            await spent(0, grown=chunk)


async def replace_channels_each(conn: AsyncConnection, app_id: str, channels: dict[str, list[str]]) -> None:
    """Replace each device's channels with its own list (``device id -> channels``)."""
    for chunk in chunks(list(channels)):
        await delete_rows(conn, device_channels, device_channels.c.device_id.in_(chunk))
    rows = (
        {"app_id": app_id, "channel": c, "device_id": d}
        for d, chans in channels.items()
        for c in dict.fromkeys(chans)
    )
    await insert_rows(conn, sa.insert(device_channels), rows)
    await spent(0, grown=(d for d, chans in channels.items() if chans))


async def replace_tags(conn: AsyncConnection, app_id: str, dev_ids: list[str], tags: dict[str, str]) -> None:
    """Give every device of ``dev_ids`` exactly ``tags``."""
    for chunk in chunks(dev_ids):
        await delete_rows(conn, device_tags, device_tags.c.device_id.in_(chunk))
        rows = (
            {"device_id": d, "app_id": app_id, "key": k, "value": v} for d in chunk for k, v in tags.items()
        )
        await insert_rows(conn, sa.insert(device_tags), rows)


async def replace_tags_each(conn: AsyncConnection, app_id: str, tags: dict[str, dict[str, str]]) -> None:
    """Replace each device's tags with its own map (``device id -> tags``)."""
    for chunk in chunks(list(tags)):
        await delete_rows(conn, device_tags, device_tags.c.device_id.in_(chunk))
    rows = (
        {"device_id": d, "app_id": app_id, "key": k, "value": v}
        for d, t in tags.items()
        for k, v in t.items()
    )
    await insert_rows(conn, sa.insert(device_tags), rows)


async def forget(conn: AsyncConnection, dev_ids: list[str]) -> None:
    """Delete the channels and tags of devices about to be deleted."""
    for chunk in chunks(dev_ids):
        await delete_rows(conn, device_channels, device_channels.c.device_id.in_(chunk))
        await delete_rows(conn, device_tags, device_tags.c.device_id.in_(chunk))
