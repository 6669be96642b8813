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
#: A publish closed this long ago has committed: the scan reads only those (a transaction that
#: closed one at ``t`` may commit a little after ``t``), so ``publish.finished`` arrives about
#: this much after the close.
SETTLE_SECONDS = 10.0
SCAN_LIMIT = 500
#: Pages of ``SCAN_LIMIT`` one webhook's scan reads per poll at most.
SCAN_PAGES = 20
#: The ``next_at`` of a disabled webhook's events: out of the sender's way until it is enabled.
PARKED = 4_102_444_800.0  # 2100-01-01
#: Sent events are kept this long, so that the scan's margin never finds a publish whose event
#: is gone and writes it again.
SENT_KEPT_SECONDS = 3600.0


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
    #: The claim's lease (``lease_until``): updates match it, so a post whose lease lapsed and
    #: was taken by another process does not overwrite that process's outcome.
    lease: float


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
    def __init__(self, db: Database, settle_seconds: float = SETTLE_SECONDS) -> None:
        self.db = db
        self.settle_seconds = settle_seconds
        self._snapshots: dict[str, tuple[float, list[tuple[str, str, bool]]]] = {}

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
                # Parked events go out now (a post in flight keeps its lease and its outcome).
                await conn.execute(
                    sa.update(webhook_events)
                    .where(webhook_events.c.webhook_id == webhook_id, webhook_events.c.sent_at.is_(None))
                    .values(next_at=clock.now())
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

    async def _subscriptions(self, conn: AsyncConnection, app_id: str) -> list[tuple[str, str, bool]]:
        """``(webhook id, events, enabled)`` of the app's webhooks (a disabled one keeps
        collecting, parked, and sends once enabled again), from a snapshot of at most 2 s."""
        hit = self._snapshots.get(app_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        q = sa.select(webhooks.c.id, webhooks.c.events, webhooks.c.enabled).where(webhooks.c.app_id == app_id)
        rows = [(r.id, r.events, bool(r.enabled)) for r in (await conn.execute(q)).all()]
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
        targets = [(wid, on) for wid, events, on in hooks if subscribes(events, event_type)]
        if not targets:
            return 0
        now = clock.now()
        eid = event_id or new_id("evt")
        body = event_body(eid, event_type, app_id, data, now)
        rows = [
            {"webhook_id": w, "app_id": app_id, "event_id": eid, "type": event_type, "body": body,
             "attempts": 0, "next_at": now if on else PARKED, "created_at": now}
            for w, on in targets
        ]  # fmt: skip
        stmt = insert_ignoring_conflicts(self.db.dialect, webhook_events, ["webhook_id", "event_id"])
        await conn.execute(stmt, rows)
        return len(rows)

    async def scan_finished(self, limit: int = SCAN_LIMIT) -> int:
        """Turn publishes closed since each webhook's cursor into ``publish.finished`` events.

        The cursor is the ``(completed_at, id)`` of the last publish turned into an event, and
        only publishes closed at least ``settle_seconds`` ago are read: the transaction that
        closed one has committed by then, so reading on from the cursor never skips a publish
        that commits late, and never reads one twice. Two processes scanning at once write the
        same event ids (the second write is dropped). Costs one read per subscribed webhook
        when nothing closed.
        """
        written = 0
        async with self.db.read() as conn:
            hooks = (await conn.execute(sa.select(webhooks))).all()
        for hook in hooks:
            if not subscribes(hook.events, "publish.finished"):
                continue
            cursor = (float(hook.publish_cursor), str(hook.publish_cursor_id))
            for _ in range(SCAN_PAGES):
                n, cursor = await self._scan_page(hook, cursor, limit)
                written += n
                if n < limit:
                    break
        return written

    async def _scan_page(
        self, hook: Any, cursor: tuple[float, str], limit: int
    ) -> tuple[int, tuple[float, str]]:
        after_t, after_id = cursor
        q = (
            sa.select(publishes)
            .where(
                publishes.c.app_id == hook.app_id,
                publishes.c.completed_at <= clock.now() - self.settle_seconds,
                sa.or_(
                    publishes.c.completed_at > after_t,
                    sa.and_(publishes.c.completed_at == after_t, publishes.c.id > after_id),
                ),
            )
            .order_by(publishes.c.completed_at, publishes.c.id)
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
            if not rows:
                return 0, cursor
            counts = await _counts(conn, [r.id for r in rows])
        now = clock.now()
        next_at = now if hook.enabled else PARKED
        events = []
        for r in rows:
            # The completion time is part of the id: a publish reopened by a dead-letter replay
            # and closed again is a new event.
            eid = f"evt_{r.id.removeprefix('pub_')}_{round(float(r.completed_at) * 1000):x}"
            data = {
                "publish_id": r.client_id or r.id, "server_id": r.id, "status": r.status,
                "campaign": r.campaign, "counts": counts.get(r.id, {}),
                "created_at": rfc3339(r.created_at), "completed_at": rfc3339(r.completed_at),
            }  # fmt: skip
            body = event_body(eid, "publish.finished", hook.app_id, data, float(r.completed_at))
            events.append(
                {"webhook_id": hook.id, "app_id": hook.app_id, "event_id": eid, "type": "publish.finished",
                 "body": body, "attempts": 0, "next_at": next_at, "created_at": now}
            )  # fmt: skip
        last = (float(rows[-1].completed_at), str(rows[-1].id))
        async with self.db.write() as conn:
            stmt = insert_ignoring_conflicts(self.db.dialect, webhook_events, ["webhook_id", "event_id"])
            await conn.execute(stmt, events)
            # Moved only from where this scan started: a process that got further keeps its cursor.
            await conn.execute(
                sa.update(webhooks)
                .where(
                    webhooks.c.id == hook.id,
                    webhooks.c.publish_cursor == after_t,
                    webhooks.c.publish_cursor_id == after_id,
                )
                .values(publish_cursor=last[0], publish_cursor_id=last[1])
            )
        return len(events), last

    # ---- sending --------------------------------------------------------------------------

    async def claim_due(self, limit: int, lease_seconds: float) -> list[DueEvent]:
        """Lease up to ``limit`` due events, oldest first, for ``lease_seconds``. Events of a
        disabled webhook are parked (due in ten years) until it is enabled again, so they never
        stand in this scan's way."""
        now = clock.now()
        pick = (
            sa.select(webhook_events.c.id)
            .where(
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
        lease = now + lease_seconds
        async with self.db.write() as conn:
            ids = [r.id for r in (await conn.execute(lock_skip_locked(self.db.dialect, pick))).all()]
            if not ids:
                return []
            await conn.execute(
                sa.update(webhook_events).where(webhook_events.c.id.in_(ids)).values(lease_until=lease)
            )
            rows = (
                await conn.execute(
                    sa.select(webhook_events, webhooks.c.url, webhooks.c.secret)
                    .join(webhooks, webhooks.c.id == webhook_events.c.webhook_id)
                    .where(webhook_events.c.id.in_(ids))
                    .order_by(webhook_events.c.id)
                )
            ).all()
        return [
            DueEvent(r.id, r.webhook_id, r.event_id, r.type, r.body, r.attempts, r.url, r.secret, lease)
            for r in rows
        ]

    async def delivered(self, webhook_id: str, events: Sequence[DueEvent]) -> None:
        """The endpoint took these: kept as sent (deleted later: see :meth:`forget_sent`), one
        transaction for a round's posts to one endpoint. An event whose lease another process
        took over meanwhile is left to that process."""
        if not events:
            return
        now = clock.now()
        async with self.db.write() as conn:
            for e in events:
                await conn.execute(
                    sa.update(webhook_events)
                    .where(webhook_events.c.id == e.id, webhook_events.c.lease_until == e.lease)
                    .values(sent_at=now, lease_until=None)
                )
            await conn.execute(
                sa.update(webhooks).where(webhooks.c.id == webhook_id).values(failures=0, last_success_at=now)
            )

    async def forget_sent(self, older_than: float = SENT_KEPT_SECONDS) -> int:
        """Delete events sent more than ``older_than`` seconds ago, and events of webhooks that no
        longer exist (written by a process whose snapshot still listed a deleted one)."""
        async with self.db.write() as conn:
            done = await conn.execute(
                sa.delete(webhook_events).where(webhook_events.c.sent_at < clock.now() - older_than)
            )
            orphans = await conn.execute(
                sa.delete(webhook_events).where(
                    ~sa.exists().where(webhooks.c.id == webhook_events.c.webhook_id)
                )
            )
        return int(done.rowcount or 0) + int(orphans.rowcount or 0)

    async def failed(
        self, event: DueEvent, error: str, retry_at: float, max_failures: int, rest: Sequence[DueEvent] = ()
    ) -> bool:
        """Record a failed attempt: the event, and ``rest`` (the endpoint's other events of the
        round, not tried after this failure) wait until ``retry_at``; the endpoint's streak grows
        by one (a round is one failure, however many events were waiting), and past
        ``max_failures`` the endpoint is disabled and its events parked. Returns True if it was."""
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(webhook_events)
                .where(webhook_events.c.id == event.id, webhook_events.c.lease_until == event.lease)
                .values(
                    attempts=webhook_events.c.attempts + 1, next_at=retry_at, lease_until=None,
                    last_error=error[:1000],
                )
            )  # fmt: skip
            for e in rest:
                await conn.execute(
                    sa.update(webhook_events)
                    .where(webhook_events.c.id == e.id, webhook_events.c.lease_until == e.lease)
                    .values(next_at=retry_at, lease_until=None)
                )
            streak = webhooks.c.failures + 1
            mine = webhooks.c.id == event.webhook_id
            await conn.execute(sa.update(webhooks).where(mine).values(failures=streak))
            disabled = await conn.execute(
                sa.update(webhooks)
                .where(mine, webhooks.c.enabled.is_(True), webhooks.c.failures >= max_failures)
                .values(
                    enabled=False, disabled_at=clock.now(),
                    disabled_reason=f"{max_failures} attempts in a row failed; the last: {error}"[:1000],
                )
            )  # fmt: skip
            if disabled.rowcount:
                await conn.execute(
                    sa.update(webhook_events)
                    .where(
                        webhook_events.c.webhook_id == event.webhook_id, webhook_events.c.sent_at.is_(None)
                    )
                    .values(next_at=PARKED)
                )
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
