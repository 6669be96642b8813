"""Delivery records looked up by their own key (publish id, recipient id), not by publish page.

The compat front-ends hand out one id per recipient of a send (Sentori's delivery ids, Expo's
push tickets) and are later asked about those ids in any order and from many publishes at once
(Expo's ``getReceipts`` takes up to 1000): a page of one publish's records cannot answer that, so
this reads exactly the records named, in one statement, scoped to the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from pushgate.domain.receipts import RECEIPT_EVENTS
from pushgate.store.db import Database
from pushgate.store.schema import deliveries, publish_stats, publishes

#: Keys read per statement (each is two bound parameters).
_CHUNK = 250


async def deliveries_by_key(
    db: Database, app_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """The app's delivery records among ``keys`` ((publish id, recipient id) pairs), by key;
    keys of other apps or of no record are left out."""
    out: dict[tuple[str, str], Any] = {}
    wanted = sorted(set(keys))
    async with db.read() as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            q = (
                sa.select(deliveries)
                .join(publishes, publishes.c.id == deliveries.c.publish_id)
                .where(
                    publishes.c.app_id == app_id,
                    sa.or_(
                        *(
                            sa.and_(deliveries.c.publish_id == pid, deliveries.c.recipient_id == rid)
                            for pid, rid in chunk
                        )
                    ),
                )
            )
            for row in (await conn.execute(q)).all():
                out[(row.publish_id, row.recipient_id)] = row
    return out


async def receipt_counts(db: Database, publish_id: str) -> dict[str, int]:
    """The publish's receipt counters (``delivered``, ``opened``, ``dismissed``, ``clicked``)
    summed over its providers: what Sentori's send status calls ``delivered`` (acks)."""
    events = [e for e in RECEIPT_EVENTS if e in publish_stats.c]
    q = sa.select(*(sa.func.coalesce(sa.func.sum(publish_stats.c[e]), 0) for e in events)).where(
        publish_stats.c.publish_id == publish_id
    )
    async with db.read() as conn:
        row = (await conn.execute(q)).one()
    return {e: int(v) for e, v in zip(events, row, strict=True)}
