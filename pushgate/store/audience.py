"""Recipient resolution: the devices a publish's recipient entry reaches, page by page.

The planner walks these pages (never the whole audience in memory); keyset pagination on the
device id keeps each page an index range scan. Admission resolves a small publish at once
(:func:`resolve_small`), a whole group of them at once, inside its own transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.filters import parse as parse_filter
from pushgate.store.db import Database
from pushgate.store.dialect import placeholders
from pushgate.store.filters import FilterStore
from pushgate.store.registrations import token_hash
from pushgate.store.schema import device_channels, devices


def _row(r: Any) -> dict[str, Any]:
    return {
        "recipient_id": r.id,
        "device_id": r.id,
        "provider": r.provider,
        "token": r.token,
        "environment": r.environment,
        # What the policy layer reads (preferences and caps by user, windows by time zone).
        "user": r.user,
        "timezone": r.timezone,
    }


def raw_recipient_id(provider: str, token_key: str) -> str:
    return "tok_" + token_hash(provider, token_key)[:32]


_COLUMNS = (
    devices.c.id,
    devices.c.provider,
    devices.c.token,
    devices.c.environment,
    devices.c.user,
    devices.c.timezone,
)


@lru_cache(maxsize=16)
def _page_query(kind: str, after: bool, fresh: bool) -> sa.Select[Any]:
    """The page query for a channel, user or device recipient, built once per shape."""
    cond: list[sa.ColumnElement[bool]] = [
        devices.c.status == "active",
        # Stale devices (not seen since ``seen_after``) are not reached through any recipient.
        *([devices.c.last_seen_at >= sa.bindparam("seen")] if fresh else []),
    ]
    if kind == "channel":
        cond += [
            device_channels.c.app_id == sa.bindparam("app"),
            device_channels.c.channel == sa.bindparam("channel"),
        ]
        if after:
            cond.append(device_channels.c.device_id > sa.bindparam("after"))
        return (
            sa.select(*_COLUMNS)
            .join(device_channels, device_channels.c.device_id == devices.c.id)
            .where(*cond)
            .order_by(device_channels.c.device_id)
            .limit(sa.bindparam("lim"))
        )
    if kind == "user":
        cond += [devices.c.app_id == sa.bindparam("app"), devices.c.user == sa.bindparam("user")]
        if after:
            cond.append(devices.c.id > sa.bindparam("after"))
        return sa.select(*_COLUMNS).where(*cond).order_by(devices.c.id).limit(sa.bindparam("lim"))
    cond += [devices.c.app_id == sa.bindparam("app"), devices.c.id == sa.bindparam("dev")]
    return sa.select(*_COLUMNS).where(*cond)


def _native_row(entry: dict[str, Any]) -> dict[str, Any]:
    """A provider-side audience (FCM/HMS topic or condition): one request, no device record."""
    return {
        "recipient_id": "nat_" + token_hash(entry["provider"], entry["token"])[:32],
        "device_id": None,
        "provider": entry["provider"],
        "token": entry["token"],
    }


async def _direct_rows(
    conn: AsyncConnection, app_id: str, entry: dict[str, Any], seen_after: float | None
) -> list[dict[str, Any]]:
    """The row of a raw-token or native recipient (a registered token is that device)."""
    if entry["type"] == "native":
        return [_native_row(entry)]
    # Stale devices (not seen since ``seen_after``) are not reached through any recipient.
    recent = devices.c.last_seen_at >= seen_after if seen_after is not None else sa.true()
    provider, token_key = entry["provider"], entry["token_key"]
    row = (
        await conn.execute(
            sa.select(*_COLUMNS, devices.c.status, recent.label("fresh")).where(
                devices.c.app_id == app_id,
                devices.c.provider == provider,
                devices.c.token_hash == token_hash(provider, token_key),
            )
        )
    ).first()
    if row is not None:
        # A registered token is that device: dedupes with the other recipients.
        return [_row(row)] if row.status == "active" and row.fresh else []
    return [
        {
            "recipient_id": raw_recipient_id(provider, token_key),
            "device_id": None,
            "provider": provider,
            "token": entry["token"],
        }
    ]


#: Recipient types :func:`resolve_small` resolves. A channel or a user is read up to one row
#: past the bound: one with more devices than fit goes to the planner.
SMALL_KINDS = frozenset({"device", "user", "channel", "token", "native"})


@dataclass(frozen=True, slots=True)
class SmallAudience:
    """A small publish's recipients, to resolve at admission."""

    app_id: str
    #: Entries of :data:`SMALL_KINDS` only.
    recipients: list[dict[str, Any]]
    #: Devices last seen before this epoch time are skipped.
    seen_after: float | None
    #: More rows than this: not resolved here (the planner pages through it).
    max_rows: int


#: Users (or channels) per statement of :func:`resolve_small` (SQLite allows 500 terms in a
#: compound SELECT).
_PARTS_PER_STATEMENT = 200

#: The bounded read of one user's or one channel's devices: the planner's page query
#: (:func:`_page_query`) as text, with the part's number.
_PART_SQL = {
    "user": (
        'SELECT {k} AS part, id, provider, token, environment, "user", timezone, last_seen_at FROM devices '
        "WHERE app_id = {0} AND \"user\" = {1} AND status = 'active' AND last_seen_at >= {2} "
        "ORDER BY id LIMIT {3}"
    ),
    "channel": (
        'SELECT {k} AS part, d.id, d.provider, d.token, d.environment, d."user", d.timezone, d.last_seen_at '
        "FROM device_channels dc JOIN devices d ON d.id = dc.device_id "
        "WHERE dc.app_id = {0} AND dc.channel = {1} AND d.status = 'active' "
        "AND d.last_seen_at >= {2} ORDER BY dc.device_id LIMIT {3}"
    ),
}


@lru_cache(maxsize=128)
def _parts_sql(dialect: str, kind: str, parts: int) -> str:
    """One bounded index range per (app, user) or (app, channel), all in one statement: ``UNION
    ALL`` of ``LIMIT``ed selects, each an index search (``ix_devices_app_user``, the
    ``device_channels`` key). (A row-value ``IN`` or a window function made SQLite scan the
    index; text SQL skips building the statement per group, as the outcome statements do.)"""
    marks = placeholders(dialect, 4 * parts)
    return " UNION ALL ".join(
        f"SELECT * FROM ({_PART_SQL[kind].format(*marks[4 * k : 4 * k + 4], k=k)}) AS p{k}"
        for k in range(parts)
    )


def _padded(n: int) -> int:
    """``n`` rounded up to a power of two, at most :data:`_PARTS_PER_STATEMENT`."""
    return min(1 << (n - 1).bit_length(), _PARTS_PER_STATEMENT)


async def _bounded_reads(
    conn: AsyncConnection, dialect: str, kind: str, keys: list[tuple[str, str]], floor: float, bound: int
) -> dict[tuple[str, str], list[Any]]:
    """Each (app, user) or (app, channel)'s first ``bound`` devices seen since ``floor``."""
    found: dict[tuple[str, str], list[Any]] = {}
    for k in range(0, len(keys), _PARTS_PER_STATEMENT):
        chunk = keys[k : k + _PARTS_PER_STATEMENT]
        # Padded to a few sizes with a key no row has: each size is one statement text, which the
        # drivers prepare once per connection (asyncpg keeps 100, sqlite3 128 per connection).
        padded = chunk + [("", "")] * (_padded(len(chunk)) - len(chunk))
        params = tuple(x for app, name in padded for x in (app, name, floor, bound))
        for r in (await conn.exec_driver_sql(_parts_sql(dialect, kind, len(padded)), params)).all():
            found.setdefault(chunk[r.part], []).append(r)
    return found


_DEVICES_BY_ID = sa.select(*_COLUMNS, devices.c.app_id, devices.c.status, devices.c.last_seen_at).where(
    devices.c.id.in_(sa.bindparam("ids", expanding=True))
)


async def resolve_small(
    conn: AsyncConnection, dialect: str, wants: Sequence[SmallAudience]
) -> list[list[dict[str, Any]] | None]:
    """The rows of each small publish, read in the caller's transaction (admission plans a
    group's small publishes in its commit), or None for one whose rows are more than its
    ``max_rows``: the planner takes that one page by page.

    The rows are the planner's (:meth:`Audience.pages`: active, fresh, each user's and each
    channel's in device id order), read for the whole group at once: every user's devices in one
    statement, every channel's in another (each a bounded index search: a user or channel with
    thousands of devices costs one short read), every device id in a third; raw tokens one lookup
    each.
    """
    if not wants:
        return []

    def named(kind: str) -> list[tuple[str, str]]:
        return sorted({(w.app_id, e[kind]) for w in wants for e in w.recipients if e["type"] == kind})

    ids = sorted({e["device_id"] for w in wants for e in w.recipients if e["type"] == "device"})
    bound = max(w.max_rows for w in wants) + 1
    cutoffs = [w.seen_after for w in wants]
    floor = -1.0 if None in cutoffs else min(c for c in cutoffs if c is not None)
    by_name = {
        kind: await _bounded_reads(conn, dialect, kind, named(kind), floor, bound)
        for kind in ("user", "channel")
    }
    by_id = {r.id: r for r in (await conn.execute(_DEVICES_BY_ID, {"ids": ids})).all()} if ids else {}
    return [await _small_rows(conn, w, by_name, by_id, bound) for w in wants]


async def _small_rows(
    conn: AsyncConnection,
    w: SmallAudience,
    by_name: dict[str, dict[tuple[str, str], list[Any]]],
    by_id: dict[str, Any],
    bound: int,
) -> list[dict[str, Any]] | None:
    """One publish's rows from the group's reads (see :func:`resolve_small`)."""

    def fresh(r: Any) -> bool:
        return w.seen_after is None or r.last_seen_at >= w.seen_after

    out: list[dict[str, Any]] = []
    for entry in w.recipients:
        kind = entry["type"]
        if kind in ("user", "channel"):
            found = by_name[kind].get((w.app_id, entry[kind]), [])
            if len(found) >= bound:
                return None  # cut at the bound: more devices than fit
            out += [_row(r) for r in found if fresh(r)]
        elif kind == "device":
            r = by_id.get(entry["device_id"])
            if r is not None and r.app_id == w.app_id and r.status == "active" and fresh(r):
                out.append(_row(r))
        elif kind in ("token", "native"):
            out += await _direct_rows(conn, w.app_id, entry, w.seen_after)
        else:
            return None
        if len(out) > w.max_rows:
            return None
    return out


class Audience:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def pages(
        self,
        app_id: str,
        entry: dict[str, Any],
        cursor: str | None,
        page_size: int,
        seen_after: float | None = None,
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        """Yield ``(rows, cursor_after)`` for one recipient entry; ``cursor_after`` None = entry done."""
        kind = entry["type"]
        fresh = seen_after is not None
        if kind in ("channel", "user"):
            while True:
                params: dict[str, Any] = {"app": app_id, "lim": page_size, "seen": seen_after}
                if kind == "channel":
                    params["channel"] = entry["channel"]
                else:
                    params["user"] = entry["user"]
                if cursor:
                    params["after"] = cursor
                q = _page_query(kind, bool(cursor), fresh)
                async with self.db.read() as conn:
                    rows = (await conn.execute(q, params)).all()
                out = [_row(r) for r in rows]
                cursor = rows[-1].id if len(rows) == page_size else None
                yield out, cursor
                if cursor is None:
                    return
        elif kind == "device":
            params = {"app": app_id, "dev": entry["device_id"], "seen": seen_after}
            async with self.db.read() as conn:
                rows = (await conn.execute(_page_query("device", False, fresh), params)).all()
            yield [_row(r) for r in rows], None
        elif kind == "token":
            async with self.db.read() as conn:
                rows_out = await _direct_rows(conn, app_id, entry, seen_after)
            yield rows_out, None
        elif kind == "native":
            yield [_native_row(entry)], None
        elif kind == "filter":
            # Keyset pages on the device id over the filter's SQL (store/filters.py), like a channel.
            node, store = parse_filter(entry["filter"]), FilterStore(self.db)
            while True:
                found = await store.page_rows(_COLUMNS, app_id, node, cursor, page_size, seen_after)
                cursor = found[-1].id if len(found) == page_size else None
                yield [_row(r) for r in found], cursor
                if cursor is None:
                    return
        else:  # pragma: no cover - admission validated the types
            raise ValueError(f"unknown recipient type {kind!r}")
