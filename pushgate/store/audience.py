"""Recipient resolution: the devices a publish's recipient entry reaches, page by page.

The planner walks these pages (never the whole audience in memory); keyset pagination on the
device id keeps each page an index range scan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa

from pushgate.store.db import Database
from pushgate.store.devices import token_hash
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
        cols = (devices.c.id, devices.c.provider, devices.c.token, devices.c.environment)
        # Stale devices (not seen since ``seen_after``) are not reached through any recipient.
        fresh = devices.c.last_seen_at >= seen_after if seen_after is not None else sa.true()
        if kind in ("channel", "user"):
            while True:
                if kind == "channel":
                    q = (
                        sa.select(*cols)
                        .join(device_channels, device_channels.c.device_id == devices.c.id)
                        .where(
                            device_channels.c.app_id == app_id,
                            device_channels.c.channel == entry["channel"],
                            devices.c.status == "active",
                            fresh,
                        )
                        .order_by(device_channels.c.device_id)
                    )
                    if cursor:
                        q = q.where(device_channels.c.device_id > cursor)
                else:
                    q = (
                        sa.select(*cols)
                        .where(
                            devices.c.app_id == app_id,
                            devices.c.user == entry["user"],
                            devices.c.status == "active",
                            fresh,
                        )
                        .order_by(devices.c.id)
                    )
                    if cursor:
                        q = q.where(devices.c.id > cursor)
                async with self.db.read() as conn:
                    rows = (await conn.execute(q.limit(page_size))).all()
                out = [_row(r) for r in rows]
                cursor = rows[-1].id if len(rows) == page_size else None
                yield out, cursor
                if cursor is None:
                    return
        elif kind == "device":
            async with self.db.read() as conn:
                rows = (
                    await conn.execute(
                        sa.select(*cols).where(
                            devices.c.app_id == app_id,
                            devices.c.id == entry["device_id"],
                            devices.c.status == "active",
                            fresh,
                        )
                    )
                ).all()
            yield [_row(r) for r in rows], None
        elif kind == "token":
            provider, token_key = entry["provider"], entry["token_key"]
            async with self.db.read() as conn:
                row = (
                    await conn.execute(
                        sa.select(*cols, devices.c.status, fresh.label("fresh")).where(
                            devices.c.app_id == app_id,
                            devices.c.provider == provider,
                            devices.c.token_hash == token_hash(provider, token_key),
                        )
                    )
                ).first()
            if row is not None:
                # A registered token is that device: dedupes with the other recipients.
                rows_out = [_row(row)] if row.status == "active" and row.fresh else []
            else:
                rows_out = [
                    {
                        "recipient_id": raw_recipient_id(provider, token_key),
                        "device_id": None,
                        "provider": provider,
                        "token": entry["token"],
                    }
                ]
            yield rows_out, None
        elif kind == "native":
            # A provider-side audience (FCM/HMS topic or condition): one request, no device record.
            yield (
                [
                    {
                        "recipient_id": "nat_" + token_hash(entry["provider"], entry["token"])[:32],
                        "device_id": None,
                        "provider": entry["provider"],
                        "token": entry["token"],
                    }
                ],
                None,
            )
        else:  # pragma: no cover - admission validated the types
            raise ValueError(f"unknown recipient type {kind!r}")
