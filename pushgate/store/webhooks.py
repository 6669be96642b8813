"""Webhooks and their outbox (docs/webhooks.md).

An event is one ``webhook_events`` row per subscribed endpoint, written in the transaction of
what it reports (a batch's outcomes), or by the scan that turns closed publishes into
``publish.finished`` events; the sender (engine/webhooks.py) claims due rows with a lease, posts
them and deletes them on a 2xx. The unique ``(webhook_id, event_id)`` makes writing an event
twice harmless, which is what lets every worker process scan without coordinating.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.domain.ids import new_id
from pushgate.domain.status import COUNTERS
from pushgate.domain.timefmt import rfc3339
from pushgate.domain.webhooks import subscribes
from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts, lock_skip_locked
from pushgate.store.schema import publish_stats, publishes, webhook_events, webhooks

#: How long a process trusts its list of an app's webhooks (a webhook created or disabled on
#: another node is seen within this time).
SNAPSHOT_SECONDS = 2.0
#: Closed publishes are re-read this far before the scan's cursor: a transaction that closed a
#: publish at ``t`` may commit after the scan read past ``t``.
SCAN_MARGIN_SECONDS = 30.0
SCAN_LIMIT = 500
#: Sent events are kept this long, so that the scan's margin never finds a publish whose event
#: is gone and writes it again.
SENT_KEPT_SECONDS = 3600.0
#: How long a claimed event is the claimer's before another process may try it.
LEASE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    app_id: str
    url: str
    events: str
    enabled: bool
    failures: int
    disabled_at: float | None
    disabled_reason: str | None
    last_success_at: float | None
    created_at: float
    #: Events waiting (filled by :meth:`WebhookStore.list`).
    pending: int = 0


@dataclass(frozen=True, slots=True)
class DueEvent:
    id: int
    webhook_id: str
    event_id: str
    type: str
    body: str
    attempts: int
    url: str
    secret: str


def _webhook(r: Any, pending: int = 0) -> Webhook:
    return Webhook(
        r.id, r.app_id, r.url, r.events, bool(r.enabled), r.failures, r.disabled_at,
        r.disabled_reason, r.last_success_at, r.created_at, pending,
    )  # fmt: skip


def event_body(event_id: str, event_type: str, app_id: str, data: dict[str, Any], at: float) -> str:
    return json.dumps(
        {"id": event_id, "type": event_type, "created_at": rfc3339(at), "app_id": app_id, "data": data},
        separators=(",", ":"),
    )


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._snapshots: dict[str, tuple[float, list[tuple[str, str]]]] = {}

    # ---- management -----------------------------------------------------------------------

    async def create(self, app_id: str, url: str, events: Sequence[str]) -> tuple[Webhook, str]:
        """A new enabled webhook and its secret (shown once). Publishes that close from now on
        are reported (not the app's history)."""
        now = clock.now()
        secret = "whsec_" + secrets.token_urlsafe(32)
        webhook_id = new_id("whk")
        row = {
            "id": webhook_id, "app_id": app_id, "url": url, "secret": secret,
            "events": " ".join(sorted(set(events))), "enabled": True, "failures": 0,
            "publish_cursor": now, "created_at": now, "updated_at": now,
        }  # fmt: skip
        async with self.db.write() as conn:
            await conn.execute(sa.insert(webhooks).values(row))
        self._snapshots.pop(app_id, None)
        found = await self.get(app_id, webhook_id)
        assert found is not None
        return found, secret

    async def all_of(self, app_id: str) -> list[Webhook]:
        pending = (
            sa.select(sa.func.count())
            .where(webhook_events.c.webhook_id == webhooks.c.id, webhook_events.c.sent_at.is_(None))
            .scalar_subquery()
            .label("pending")
        )
        q = sa.select(webhooks, pending).where(webhooks.c.app_id == app_id).order_by(webhooks.c.created_at)
        async with self.db.read() as conn:
            return [_webhook(r, r.pending) for r in (await conn.execute(q)).all()]

    async def get(self, app_id: str, webhook_id: str) -> Webhook | None:
        return next((w for w in await self.all_of(app_id) if w.id == webhook_id), None)

    async def update(
        self,
        app_id: str,
        webhook_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        enabled: bool | None = None,
    ) -> Webhook | None:
        """Change a webhook; ``enabled=True`` also clears its failure streak (its waiting
        events go out again at once)."""
        values: dict[str, Any] = {"updated_at": clock.now()}
        if url is not None:
            values["url"] = url
        if events is not None:
            values["events"] = " ".join(sorted(set(events)))
        if enabled is not None:
            values["enabled"] = enabled
            if enabled:
                values |= {"failures": 0, "disabled_at": None, "disabled_reason": None}
        async with self.db.write() as conn:
            done = await conn.execute(
                sa.update(webhooks)
                .where(webhooks.c.app_id == app_id, webhooks.c.id == webhook_id)
                .values(values)
            )
            if done.rowcount and enabled:
                await conn.execute(
                    sa.update(webhook_events)
                    .where(webhook_events.c.webhook_id == webhook_id)
                    .values(next_at=clock.now(), lease_until=None)
                )
        self._snapshots.pop(app_id, None)
        return await self.get(app_id, webhook_id) if done.rowcount else None

    async def rotate_secret(self, app_id: str, webhook_id: str) -> str | None:
        secret = "whsec_" + secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            done = await conn.execute(
                sa.update(webhooks)
                .where(webhooks.c.app_id == app_id, webhooks.c.id == webhook_id)
                .values(secret=secret, updated_at=clock.now())
            )
        return secret if done.rowcount else None

    async def delete(self, app_id: str, webhook_id: str) -> bool:
        """Delete a webhook and the events still waiting for it."""
        async with self.db.write() as conn:
            done = await conn.execute(
                sa.delete(webhooks).where(webhooks.c.app_id == app_id, webhooks.c.id == webhook_id)
            )
            if done.rowcount:
                await conn.execute(sa.delete(webhook_events).where(webhook_events.c.webhook_id == webhook_id))
        self._snapshots.pop(app_id, None)
        return bool(done.rowcount)

    # ---- writing events -------------------------------------------------------------------

    async def _subscriptions(self, conn: AsyncConnection, app_id: str) -> list[tuple[str, str]]:
        """``(webhook id, events)`` of the app's webhooks (enabled or not: a disabled one keeps
        collecting, and sends once enabled again), from a snapshot of at most 2 s."""
        hit = self._snapshots.get(app_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        q = sa.select(webhooks.c.id, webhooks.c.events).where(webhooks.c.app_id == app_id)
        rows = [(r.id, r.events) for r in (await conn.execute(q)).all()]
        self._snapshots[app_id] = (now + SNAPSHOT_SECONDS, rows)
        return rows

    async def emit(
        self,
        conn: AsyncConnection,
        app_id: str,
        event_type: str,
        data: dict[str, Any],
        *,
        event_id: str | None = None,
    ) -> int:
        """Queue an event for each of the app's webhooks subscribed to its type, in the
        caller's transaction; returns how many rows were written. Costs one read of a snapshot
        (no statement) for an app without webhooks."""
        hooks = await self._subscriptions(conn, app_id)
        targets = [wid for wid, events in hooks if subscribes(events, event_type)]
        if not targets:
            return 0
        now = clock.now()
        eid = event_id or new_id("evt")
        body = event_body(eid, event_type, app_id, data, now)
        rows = [
            {"webhook_id": w, "app_id": app_id, "event_id": eid, "type": event_type, "body": body,
             "attempts": 0, "next_at": now, "created_at": now}
            for w in targets
        ]  # fmt: skip
        stmt = insert_ignoring_conflicts(self.db.dialect, webhook_events, ["webhook_id", "event_id"])
        await conn.execute(stmt, rows)
        return len(rows)

    async def scan_finished(self, limit: int = SCAN_LIMIT) -> int:
        """Turn publishes closed since each webhook's cursor into ``publish.finished`` events
        (the event id is derived from the publish, so a second scan writes nothing new)."""
        written = 0
        async with self.db.read() as conn:
            hooks = (
                await conn.execute(
                    sa.select(webhooks.c.id, webhooks.c.app_id, webhooks.c.events, webhooks.c.publish_cursor)
                )
            ).all()
        for hook in hooks:
            if not subscribes(hook.events, "publish.finished"):
                continue
            written += await self._scan_one(hook.id, hook.app_id, float(hook.publish_cursor), limit)
        return written

    async def _scan_one(self, webhook_id: str, app_id: str, cursor: float, limit: int) -> int:
        q = (
            sa.select(publishes)
            .where(
                publishes.c.app_id == app_id,
                publishes.c.completed_at >= cursor - SCAN_MARGIN_SECONDS,
                publishes.c.completed_at > sa.bindparam("floor"),
            )
            .order_by(publishes.c.completed_at)
            .limit(limit)
        )
        async with self.db.write() as conn:
            created = (
                await conn.execute(sa.select(webhooks.c.created_at).where(webhooks.c.id == webhook_id))
            ).scalar()
            if created is None:
                return 0
            rows = (await conn.execute(q, {"floor": float(created)})).all()
            if not rows:
                return 0
            counts = await _counts(conn, [r.id for r in rows])
            events = []
            for r in rows:
                eid = "evt_" + r.id.removeprefix("pub_") + "_f"
                data = {
                    "publish_id": r.client_id or r.id, "server_id": r.id, "status": r.status,
                    "campaign": r.campaign, "counts": counts.get(r.id, {}),
                    "created_at": rfc3339(r.created_at), "completed_at": rfc3339(r.completed_at),
                }  # fmt: skip
                body = event_body(eid, "publish.finished", app_id, data, float(r.completed_at))
                events.append(
                    {"webhook_id": webhook_id, "app_id": app_id, "event_id": eid, "type": "publish.finished",
                     "body": body, "attempts": 0, "next_at": clock.now(), "created_at": clock.now()}
                )  # fmt: skip
            stmt = insert_ignoring_conflicts(self.db.dialect, webhook_events, ["webhook_id", "event_id"])
            await conn.execute(stmt, events)
            newest = max(float(r.completed_at) for r in rows)
            await conn.execute(
                sa.update(webhooks)
                .where(webhooks.c.id == webhook_id, webhooks.c.publish_cursor < newest)
                .values(publish_cursor=newest)
            )
        return len(events)

    # ---- sending --------------------------------------------------------------------------

    async def claim_due(self, limit: int) -> list[DueEvent]:
        """Lease up to ``limit`` due events of enabled webhooks, oldest first."""
        now = clock.now()
        pick = (
            sa.select(webhook_events.c.id)
            .join(webhooks, webhooks.c.id == webhook_events.c.webhook_id)
            .where(
                webhooks.c.enabled.is_(True),
                webhook_events.c.sent_at.is_(None),
                webhook_events.c.next_at <= now,
                sa.or_(webhook_events.c.lease_until.is_(None), webhook_events.c.lease_until < now),
            )
            .order_by(webhook_events.c.next_at)
            .limit(limit)
        )
        # A read first: the common answer is "nothing due", which then costs no write
        # transaction (on SQLite, no turn at the one writer) every poll of every worker.
        async with self.db.read() as conn:
            if (await conn.execute(pick.limit(1))).first() is None:
                return []
        async with self.db.write() as conn:
            ids = [r.id for r in (await conn.execute(lock_skip_locked(self.db.dialect, pick))).all()]
            if not ids:
                return []
            await conn.execute(
                sa.update(webhook_events)
                .where(webhook_events.c.id.in_(ids))
                .values(lease_until=now + LEASE_SECONDS)
            )
            rows = (
                await conn.execute(
                    sa.select(webhook_events, webhooks.c.url, webhooks.c.secret)
                    .join(webhooks, webhooks.c.id == webhook_events.c.webhook_id)
                    .where(webhook_events.c.id.in_(ids))
                )
            ).all()
        return [
            DueEvent(r.id, r.webhook_id, r.event_id, r.type, r.body, r.attempts, r.url, r.secret)
            for r in rows
        ]

    async def delivered(self, event: DueEvent) -> None:
        """The endpoint took it: kept as sent (not deleted yet: see :meth:`forget_sent`)."""
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(webhook_events).where(webhook_events.c.id == event.id).values(sent_at=clock.now())
            )
            await conn.execute(
                sa.update(webhooks)
                .where(webhooks.c.id == event.webhook_id)
                .values(failures=0, last_success_at=clock.now())
            )

    async def forget_sent(self, older_than: float = SENT_KEPT_SECONDS) -> int:
        """Delete events sent more than ``older_than`` seconds ago (long past the scan margin)."""
        async with self.db.write() as conn:
            done = await conn.execute(
                sa.delete(webhook_events).where(webhook_events.c.sent_at < clock.now() - older_than)
            )
        return int(done.rowcount or 0)

    async def failed(self, event: DueEvent, error: str, retry_at: float, max_failures: int) -> bool:
        """Record a failed attempt: the event waits until ``retry_at``; the webhook's streak
        grows, and past ``max_failures`` the webhook is disabled. Returns True if it was."""
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(webhook_events)
                .where(webhook_events.c.id == event.id)
                .values(
                    attempts=webhook_events.c.attempts + 1, next_at=retry_at, lease_until=None,
                    last_error=error[:1000],
                )
            )  # fmt: skip
            streak = webhooks.c.failures + 1
            await conn.execute(
                sa.update(webhooks).where(webhooks.c.id == event.webhook_id).values(failures=streak)
            )
            disabled = await conn.execute(
                sa.update(webhooks)
                .where(
                    webhooks.c.id == event.webhook_id,
                    webhooks.c.enabled.is_(True),
                    webhooks.c.failures >= max_failures,
                )
                .values(
                    enabled=False, disabled_at=clock.now(),
                    disabled_reason=f"{max_failures} attempts in a row failed; the last: {error}"[:1000],
                )
            )  # fmt: skip
        return bool(disabled.rowcount)


async def _counts(conn: AsyncConnection, publish_ids: list[str]) -> dict[str, dict[str, int]]:
    """Each publish's counters summed over its providers."""
    cols = [sa.func.sum(getattr(publish_stats.c, name)).label(name) for name in COUNTERS]
    q = (
        sa.select(publish_stats.c.publish_id, *cols)
        .where(publish_stats.c.publish_id.in_(publish_ids))
        .group_by(publish_stats.c.publish_id)
    )
    out: dict[str, dict[str, int]] = {}
    for r in (await conn.execute(q)).all():
        out[r.publish_id] = {name: int(getattr(r, name) or 0) for name in COUNTERS}
    return out
