"""The webhook sender: posts queued events, retries with backoff, disables dead endpoints.

It runs in every worker process beside the job workers, never in their way: events live in
their own table (``webhook_events``), a slow or failing endpoint costs only this loop's time,
and delivery to devices never waits for it. Each round it turns newly closed publishes into
``publish.finished`` events (``WebhookStore.scan_finished``), then leases the due events and
posts them, at most ``[webhooks] concurrency`` at once, through the providers' transport (so
the same outbound rules apply: public https hosts, loopback only for the lab).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.config import WebhookSettings
from pushgate.domain import clock
from pushgate.domain.accounting import Accounting
from pushgate.domain.status import DeliveryStatus
from pushgate.domain.webhooks import EventType, retry_delay, signature
from pushgate.metrics import WEBHOOK_POSTS
from pushgate.providers.transport import HttpRequest, Transport, TransportError
from pushgate.store.publishes import Publish
from pushgate.store.webhooks import DueEvent, WebhookStore

log = logging.getLogger("pushgate.webhooks")

#: Sent events are deleted every this many rounds (they are kept an hour: store/webhooks.py).
FORGET_EVERY = 300


class WebhookSender:
    """One worker process's poster. A round leases at most ``concurrency`` due events; each
    endpoint's events of the round are posted one after the other, the endpoints side by side.
    The first failure of an endpoint ends its round: that event and the endpoint's remaining
    ones wait for the next step of the ladder, and the endpoint's failure streak grows by one
    (an outage is one failure per round, not one per waiting event)."""

    def __init__(self, store: WebhookStore, transport: Transport, settings: WebhookSettings) -> None:
        self.store = store
        self.transport = transport
        self.settings = settings

    @property
    def lease_seconds(self) -> float:
        """Long enough for a round: an endpoint's events are posted one after the other."""
        return self.settings.timeout_seconds * self.settings.concurrency + 30.0

    async def run(self, stop: asyncio.Event) -> None:
        rounds = 0
        while not stop.is_set():
            try:
                if rounds % FORGET_EVERY == 0:
                    await self.store.forget_sent()
                rounds += 1
                await self.store.scan_finished()
                while not stop.is_set() and await self.round() == self.settings.concurrency:
                    pass
            except Exception as exc:  # the database may be away: try again next round
                log.warning("webhook round failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.settings.poll_interval_seconds)
            except TimeoutError:
                pass

    async def round(self) -> int:
        """Post one lease of due events; returns how many were leased."""
        due = await self.store.claim_due(self.settings.concurrency, self.lease_seconds)
        by_endpoint: dict[str, list[DueEvent]] = {}
        for e in due:
            by_endpoint.setdefault(e.webhook_id, []).append(e)
        await asyncio.gather(*(self._endpoint(wid, events) for wid, events in by_endpoint.items()))
        return len(due)

    async def _endpoint(self, webhook_id: str, events: list[DueEvent]) -> None:
        sent: list[DueEvent] = []
        for i, event in enumerate(events):
            error = await self._post(event)
            if error is None:
                WEBHOOK_POSTS.labels("delivered").inc()
                sent.append(event)
                continue
            WEBHOOK_POSTS.labels("failed").inc()
            await self.store.delivered(webhook_id, sent)
            delay = retry_delay(event.attempts + 1, self.settings.retry_ladder)
            retry_at = clock.now() + delay * (1 + random.uniform(0, 0.1))
            if await self.store.failed(event, error, retry_at, self.settings.max_failures, events[i + 1 :]):
                log.warning(
                    "webhook %s disabled after %d failed attempts in a row (last: %s)",
                    webhook_id,
                    self.settings.max_failures,
                    error,
                )
            return
        await self.store.delivered(webhook_id, sent)

    async def _post(self, event: DueEvent) -> str | None:
        """Post one event: None when the endpoint answered 2xx, else what went wrong."""
        body = event.body.encode()
        request = HttpRequest(
            "POST",
            event.url,
            {
                "content-type": "application/json",
                "user-agent": "pushgate-webhooks",
                "x-pushgate-event": event.type,
                "x-pushgate-event-id": event.event_id,
                "x-pushgate-signature": signature(event.secret, int(clock.now()), body),
            },
            body,
            timeout=self.settings.timeout_seconds,
        )
        try:
            answer = await self.transport.request(request)
        except TransportError as exc:
            return f"{exc.code}: {exc}"[:300]
        except Exception as exc:  # a refused URL (outbound rules) and the like: not our crash
            return f"{type(exc).__name__}: {exc}"[:300]
        return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"


async def report_outcomes(
    store: WebhookStore, conn: AsyncConnection, pub: Publish, provider: str, out: Accounting[Any]
) -> None:
    """``delivery.failed`` and ``device.invalid_token`` events for a recorded batch, in its
    transaction (nothing is written for a batch without failures or an app without webhooks).
    One event per batch and type, not per delivery: a fan-out with a thousand dead tokens is a
    few events of up to ``SEND_CHUNK`` (100) items each."""
    failed = [u for u in out.updates if u.status in _FAILED]
    if not failed:
        return
    publish_id = pub.public_id
    items = [
        {
            "recipient_id": u.recipient_id,
            "device_id": u.recipient_id if u.recipient_id.startswith("dev_") else None,
            "provider": provider,
            "status": u.status,
            "error_class": u.error_class,
            "error_code": u.error_code,
            "error_message": u.error_message,
            "dead_letter": u.dead,
        }
        for u in failed
    ]
    data = {"publish_id": publish_id, "server_id": pub.id, "deliveries": items}
    await store.emit(conn, pub.app_id, EventType.DELIVERY_FAILED, data)
    if out.invalid:
        devices = [
            {"device_id": rid, "provider": provider, "token": token, "reason": reason}
            for rid, (reason, token) in out.invalid.items()
        ]
        data = {"publish_id": publish_id, "server_id": pub.id, "devices": devices}
        await store.emit(conn, pub.app_id, EventType.DEVICE_INVALID_TOKEN, data)


_FAILED = frozenset({DeliveryStatus.FAILED.value, DeliveryStatus.INVALID_TOKEN.value})
