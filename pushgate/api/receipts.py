"""``POST /v1/receipts``: devices (or their backend) report what became of a notification
(docs/receipts.md).

A report names a delivery record by the ids its payload carried (``pushgate.p`` and
``pushgate.d``: ``publish_id`` and ``delivery_id``), or by ``publish_id`` and ``device_id``
(HMS and MiPush payloads carry only ``p``: one request serves many devices). The app key (scope
``register``) may report any of the app's deliveries; a device token only its own device's:
another device's delivery is ``not_found``, exactly like one that does not exist, so a token
learns nothing about other devices.

One transaction per request: every item is recorded, or (a 400) none is.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from pushgate.api.client_auth import client_of
from pushgate.api.errors import bad_request, error_responses
from pushgate.api.schemas import Strict
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain import clock
from pushgate.domain.receipts import RECEIPT_EVENTS, ReceiptEvent
from pushgate.domain.timefmt import parse_rfc3339, rfc3339
from pushgate.store.publishes.receipts import Receipt, ReceiptResult, ReceiptTooEarly

#: Items per request at most.
MAX_RECEIPTS = 500
#: Seconds a reported time may be ahead of this server's clock (device clocks drift).
FUTURE_SKEW_SECONDS = 300.0

#: Delivery ids are ``[a-z0-9_]`` (``dev_…``, ``tok_…``) or, for a realtime session,
#: ``ses_<socket.io sid>``: engine.io's sids are base64url, ``-`` included.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class ReceiptIn(Strict):
    #: The publish: the payload's ``pushgate.p``.
    publish_id: Id
    #: ``delivered``, ``opened``, ``dismissed`` or ``clicked`` (checked by :func:`parse_items`).
    event: Annotated[str, msgspec.Meta(max_length=64)]
    #: The delivery record: the payload's ``pushgate.d`` (give it or ``device_id``).
    delivery_id: Id | None = None
    #: The device, for payloads without ``d`` (HMS, MiPush): its delivery in that publish.
    device_id: Id | None = None
    #: When it happened, RFC 3339 (default: now).
    at: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class ReceiptsIn(Strict):
    #: 1 to :data:`MAX_RECEIPTS` items (checked by :func:`parse_items`, for a clearer 400).
    receipts: list[ReceiptIn]


class ReceiptOut(msgspec.Struct):
    publish_id: str
    #: The delivery record's id (``recipient_id``): the item's ``delivery_id`` or ``device_id``.
    delivery_id: str
    event: str
    #: ``recorded`` (something new), ``duplicate`` (all of it was known) or ``not_found``.
    result: str
    #: The events this item recorded: an ``opened`` first reported records ``delivered`` too.
    recorded_events: list[str]


class ReceiptsOut(msgspec.Struct):
    #: One per item, in order.
    results: list[ReceiptOut]
    recorded: int
    duplicate: int
    not_found: int


def parse_items(items: list[ReceiptIn], now: float) -> list[Receipt]:
    """The items as store reports (400 naming the item's field for a bad one)."""
    if not 1 <= len(items) <= MAX_RECEIPTS:
        raise bad_request(
            f"receipts: give 1 to {MAX_RECEIPTS} receipts per request (got {len(items)}); "
            "split a longer list into several requests"
        )
    out: list[Receipt] = []
    for i, item in enumerate(items):
        where = f"receipts[{i}]"
        if item.event not in RECEIPT_EVENTS:
            raise bad_request(
                f"{where}.event: {item.event!r} is not an event; use one of {', '.join(RECEIPT_EVENTS)}"
            )
        if (item.delivery_id is None) == (item.device_id is None):
            raise bad_request(
                f"{where}: give exactly one of delivery_id (the payload's pushgate.d) or device_id "
                "(with publish_id, for payloads that carry only pushgate.p)"
            )
        at = now
        if item.at is not None:
            try:
                at = parse_rfc3339(item.at)
            except ValueError as exc:
                raise bad_request(
                    f"{where}.at: not an RFC 3339 time ({exc}); e.g. 2026-12-07T15:00:00Z"
                ) from None
            if at > now + FUTURE_SKEW_SECONDS:
                raise bad_request(
                    f"{where}.at: {item.at} is in the future (more than {int(FUTURE_SKEW_SECONDS)} s "
                    "ahead of the server's clock); send the time it happened, or leave at out for now"
                )
        recipient = item.delivery_id if item.delivery_id is not None else item.device_id
        assert recipient is not None
        out.append(Receipt(item.publish_id, recipient, ReceiptEvent(item.event), at))
    return out


class ReceiptController(Controller):
    path = "/receipts"
    tags = ["receipts"]

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Report receipts (delivered, opened, dismissed, clicked) of deliveries",
        description=(
            "Each item names a delivery by publish_id and delivery_id (the payload's pushgate.p and "
            "pushgate.d) or by publish_id and device_id, with its event and time. Each event is "
            "recorded once per delivery (a repeat is a duplicate, counters unchanged). App key "
            "(register scope) or a device token, which reports only its own device's deliveries "
            "(others are not_found). docs/receipts.md."
        ),
        responses=error_responses(400, 401, 403),
    )
    async def report(
        self,
        request: Request[Any, Any, Any],
        app: AppDep,
        services: ServicesDep,
        data: JSONBody[ReceiptsIn],
    ) -> ReceiptsOut:
        principal = client_of(request)
        own = principal.device_id if principal is not None else None
        reports = parse_items(data.receipts, clock.now())
        try:
            recorded = await services.publishes.record_receipts(
                app.id, reports, device_id=own, webhooks=services.webhooks
            )
        except ReceiptTooEarly as exc:
            item = data.receipts[exc.index]
            raise bad_request(
                f"receipts[{exc.index}].at: {item.at} is before its publish was accepted "
                f"({rfc3339(exc.publish_created_at)}); send the time the device saw the event"
            ) from None
        results = [
            ReceiptOut(
                r.publish_id,
                r.recipient_id,
                r.event.value,
                done.result.value,
                [e.value for e in done.new_events],
            )
            for r, done in zip(reports, recorded, strict=True)
        ]
        tally = {k: sum(1 for d in recorded if d.result is k) for k in ReceiptResult}
        return ReceiptsOut(
            results,
            recorded=tally[ReceiptResult.RECORDED],
            duplicate=tally[ReceiptResult.DUPLICATE],
            not_found=tally[ReceiptResult.NOT_FOUND],
        )
