"""Receipts on delivery records (docs/receipts.md): ``<event>_at`` set once, counted once.

One conditional update per (delivery, event) — ``SET opened_at = :at WHERE opened_at IS NULL``
— decides whether the report is the first; only a first moves the publish's counter, in the
same transaction, so a counter equals the number of deliveries with that time set, whatever
retries or concurrent reports (two tabs acking one notification) do.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.receipts import ReceiptEvent, implied
from pushgate.domain.timefmt import rfc3339
from pushgate.domain.webhooks import EventType
from pushgate.store.publishes.model import Repository
from pushgate.store.schema import deliveries, publish_stats, publishes
from pushgate.store.webhooks import WebhookStore

#: Seconds a reported time may precede its publish (device clocks drift): such a time is
#: recorded as the publish's; earlier than that is refused (:class:`ReceiptTooEarly`).
SKEW_SECONDS = 300.0


class ReceiptResult(enum.StrEnum):
    #: At least one of the report's events was new on the delivery.
    RECORDED = "recorded"
    #: Every event it implies was already recorded (a retry, a second tab).
    DUPLICATE = "duplicate"
    #: No such delivery of the app (or not the device's own, for a device token).
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class Receipt:
    """One report: which delivery (its publish and recipient id: the payload's ``p`` and
    ``d``), what happened, when (epoch seconds)."""

    publish_id: str
    recipient_id: str
    event: ReceiptEvent
    at: float


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a report changed: the events that were new (empty for a duplicate) and the
    delivery's provider and device (for the ``receipt`` webhook)."""

    result: ReceiptResult
    new_events: tuple[ReceiptEvent, ...] = ()
    provider: str | None = None
    device_id: str | None = None


#: Receipt counts to add per (publish, provider): event → count.
Counters = dict[tuple[str, str], dict[str, int]]


class ReceiptTooEarly(Exception):
    """A report's time is before its publish (beyond :data:`SKEW_SECONDS`): the request is
    refused whole (nothing of it was recorded)."""

    def __init__(self, index: int, publish_created_at: float) -> None:
        super().__init__(index, publish_created_at)
        self.index = index
        self.publish_created_at = publish_created_at


class Receipts(Repository):
    """Receipts recorded on deliveries and counted on their publish."""

    async def record_receipt(
        self,
        conn: AsyncConnection,
        app_id: str,
        receipt: Receipt,
        *,
        device_id: str | None = None,
        webhooks: WebhookStore | None = None,
        counters: Counters | None = None,
    ) -> Recorded:
        """Record one report inside the caller's transaction, and queue a ``receipt`` webhook
        event (``webhooks``) for each event that was new, in that transaction: every path that
        records receipts (the API, realtime acks, compat front-ends) tells the app the same way.
        ``device_id``: the reporter is that device (a device token), so only its own deliveries
        are found. ``counters``: the publish counters are moved by the caller, from these sums,
        after its last delivery row (:meth:`record_receipts`); None: moved here."""
        where = [
            deliveries.c.publish_id == receipt.publish_id,
            deliveries.c.recipient_id == receipt.recipient_id,
            # The publish is the app's: one app never touches another's records.
            sa.exists().where(publishes.c.id == deliveries.c.publish_id, publishes.c.app_id == app_id),
        ]
        if device_id is not None:
            where.append(deliveries.c.device_id == device_id)
        found = (
            await conn.execute(sa.select(deliveries.c.provider, deliveries.c.device_id).where(*where))
        ).first()
        if found is None:
            return Recorded(ReceiptResult.NOT_FOUND)
        new: list[ReceiptEvent] = []
        for event in implied(receipt.event):
            column = deliveries.c[f"{event.value}_at"]
            done = await conn.execute(
                sa.update(deliveries).where(*where[:2], column.is_(None)).values({column.name: receipt.at})
            )
            if done.rowcount:
                new.append(event)
        if new:
            moved = {e.value: 1 for e in new}
            if counters is None:
                await move_counters(conn, receipt.publish_id, found.provider, moved)
            else:
                sums = counters.setdefault((receipt.publish_id, found.provider), {})
                for name in moved:
                    sums[name] = sums.get(name, 0) + 1
        for event in new:
            if webhooks is None:
                break
            data = {
                "publish_id": receipt.publish_id,
                "delivery_id": receipt.recipient_id,
                "device_id": found.device_id,
                "event": event.value,
                "at": rfc3339(receipt.at),
            }
            await webhooks.emit(conn, app_id, EventType.RECEIPT, data)
        return Recorded(
            ReceiptResult.RECORDED if new else ReceiptResult.DUPLICATE,
            tuple(new),
            found.provider,
            found.device_id,
        )

    async def record_receipts(
        self,
        app_id: str,
        receipts: Sequence[Receipt],
        *,
        device_id: str | None = None,
        webhooks: WebhookStore | None = None,
    ) -> list[Recorded]:
        """Record a request's reports in one transaction and queue a ``receipt`` webhook event
        for each event that was new (in the same transaction, so an event is queued exactly when
        its receipt is recorded). Raises :class:`ReceiptTooEarly` (and records nothing) for a
        time before its publish.

        Lock order (PostgreSQL): the delivery rows in key order (a report of one delivery keeps
        its place among that delivery's), then the publish counters, sorted. A dispatcher's or a
        cancel's transaction locks delivery rows, then counters: moving a counter after the first
        item and then waiting for the next item's row made a lock cycle (one side aborted)."""
        ids = sorted({r.publish_id for r in receipts})
        async with self.db.write() as conn:
            q = sa.select(publishes.c.id, publishes.c.created_at).where(
                publishes.c.app_id == app_id, publishes.c.id.in_(ids)
            )
            created = {row.id: float(row.created_at) for row in (await conn.execute(q)).all()}
            out: list[Recorded] = [Recorded(ReceiptResult.NOT_FOUND)] * len(receipts)
            todo: list[tuple[int, Receipt]] = []
            for i, r in enumerate(receipts):
                start = created.get(r.publish_id)
                if start is None:
                    continue
                if r.at < start - SKEW_SECONDS:
                    raise ReceiptTooEarly(i, start)
                todo.append((i, Receipt(r.publish_id, r.recipient_id, r.event, max(r.at, start))))
            counters: Counters = {}
            for i, r in sorted(todo, key=lambda item: (item[1].publish_id, item[1].recipient_id)):
                out[i] = await self.record_receipt(
                    conn, app_id, r, device_id=device_id, webhooks=webhooks, counters=counters
                )
            for (publish_id, provider), moved in sorted(counters.items()):
                await move_counters(conn, publish_id, provider, moved)
        return out


async def move_counters(conn: AsyncConnection, publish_id: str, provider: str, moved: dict[str, int]) -> None:
    """Add ``moved`` (event → count) to the publish's counters of ``provider``."""
    await conn.execute(
        sa.update(publish_stats)
        .where(publish_stats.c.publish_id == publish_id, publish_stats.c.provider == provider)
        .values({name: publish_stats.c[name] + n for name, n in moved.items()})
    )
