"""Recipient resolution: the devices a publish's recipient entry reaches, page by page.

The planner walks these pages (never the whole audience in memory); keyset pagination on the
device id keeps each page an index range scan. Admission resolves a small publish at once
(:func:`resolve_small`) with the same queries, inside its own transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.store.db import Database
from pushgate.store.registrations import token_hash
from pushgate.store.schema import device_channels, devices


def _row(r: Any) -> dict[str, Any]:
    return {
        "recipient_id": r.id,
        "device_id": r.id,
        "provider": r.provider,
        "token": r.token,
        "environment": r.environment,
    }


def raw_recipient_id(provider: str, token_key: str) -> str:
    return "tok_" + token_hash(provider, token_key)[:32]


_COLUMNS = (devices.c.id, devices.c.provider, devices.c.token, devices.c.environment)


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


#: Recipient types :func:`resolve_small` resolves (a channel's size is unknown until read).
SMALL_KINDS = frozenset({"device", "user", "token", "native"})


async def resolve_small(
    conn: AsyncConnection,
    app_id: str,
    recipients: list[dict[str, Any]],
    seen_after: float | None,
    max_rows: int,
) -> list[dict[str, Any]] | None:
    """Every row of a small publish, read in the caller's transaction (admission plans small
    publishes in its own commit), or None when they are more than ``max_rows`` (or a recipient is
    not of :data:`SMALL_KINDS`): the planner takes that publish page by page instead.

    The same queries as :meth:`Audience.pages`, each bounded by ``max_rows``: a user with
    thousands of devices costs one short index read here, not thousands of rows.
    """
    out: list[dict[str, Any]] = []
    fresh = seen_after is not None
    for entry in recipients:
        kind = entry["type"]
        if kind not in SMALL_KINDS:
            return None
        if kind == "user":
            params = {"app": app_id, "user": entry["user"], "lim": max_rows + 1, "seen": seen_after}
            out += [_row(r) for r in (await conn.execute(_page_query("user", False, fresh), params)).all()]
        elif kind == "device":
            params = {"app": app_id, "dev": entry["device_id"], "seen": seen_after}
            out += [_row(r) for r in (await conn.execute(_page_query("device", False, fresh), params)).all()]
        else:
            out += await _direct_rows(conn, app_id, entry, seen_after)
        if len(out) > max_rows:
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
        else:  # pragma: no cover - admission validated the types
            raise ValueError(f"unknown recipient type {kind!r}")
