"""Receipts reported by device rather than by delivery id (Sockudo's ``deliveryStatus`` names
the publish and the device; the native receipt names the delivery's recipient id).
"""

from __future__ import annotations

import sqlalchemy as sa

from pushgate.domain.receipts import ReceiptEvent
from pushgate.store.db import Database
from pushgate.store.publishes import PublishStore
from pushgate.store.publishes.receipts import Receipt, ReceiptResult, Recorded
from pushgate.store.schema import deliveries
from pushgate.store.webhooks import WebhookStore


async def record_device_receipt(
    db: Database,
    publishes: PublishStore,
    app_id: str,
    publish_id: str,
    device_id: str,
    event: ReceiptEvent,
    at: float,
    webhooks: WebhookStore | None = None,
) -> Recorded:
    """Record ``event`` on the publish's delivery to the device (``NOT_FOUND``: none) exactly
    as ``POST /v1/receipts`` records it (``record_receipts``: its count, the time checked against
    the publish, ``ReceiptTooEarly``, the ``receipt`` webhook)."""
    async with db.read() as conn:
        recipient = (
            await conn.execute(
                sa.select(deliveries.c.recipient_id)
                .where(deliveries.c.publish_id == publish_id, deliveries.c.device_id == device_id)
                .limit(1)
            )
        ).scalar()
    if recipient is None:
        return Recorded(ReceiptResult.NOT_FOUND)
    # record_receipts checks the publish is the app's, so another app's ids find nothing.
    [done] = await publishes.record_receipts(
        app_id, [Receipt(publish_id, str(recipient), event, at)], device_id=device_id, webhooks=webhooks
    )
    return done
