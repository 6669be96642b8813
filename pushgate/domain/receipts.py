"""What a receipt says about a delivery (docs/receipts.md): the events a device or a realtime
session reports after a provider (or the socket) accepted the notification.

Each event is recorded once per delivery (the first report wins: a retried ``POST /v1/receipts``
or a second tab's ack moves no counter twice). An ``opened``, ``clicked`` or ``dismissed`` also
records ``delivered`` when it was not reported: a person cannot open what never arrived, and
many apps only report the open (the delivery report of a killed app is often lost).
"""

from __future__ import annotations

import enum


class ReceiptEvent(enum.StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    DISMISSED = "dismissed"
    CLICKED = "clicked"


#: Every event, in the order a delivery lives them (columns ``<event>_at`` of ``deliveries`` and
#: counters of ``publish_stats``).
RECEIPT_EVENTS: tuple[str, ...] = tuple(e.value for e in ReceiptEvent)


def implied(event: ReceiptEvent) -> tuple[ReceiptEvent, ...]:
    """The events one report records: itself, and ``delivered`` under any later one."""
    if event is ReceiptEvent.DELIVERED:
        return (event,)
    return (ReceiptEvent.DELIVERED, event)
