"""A publish's realtime stage: its plan job reaches the sessions before planning any device.

For a publish with ``realtime`` on (docs/realtime.md, "Realtime as a delivery path") the plan job
first emits the ``notification`` event to every session of the publish's users and channels
(``realtime/delivery.py``), then records one ``sent`` delivery per session reached and saves the
stage as done with the job's cursor, in one transaction. What follows depends on the mode:

- ``also``: the devices are planned at once, in the same run;
- ``first``: the devices of users no session stood for are planned at once (a first pass that
  leaves the reached users' rows out); the job is then given back to run again ``ack_timeout``
  after the emit, and that second pass plans the rest, skipping (``realtime_acked``) the devices
  of users who acked (``store/publishes/policy.py``). Rows the first pass planned are not planned
  twice: the (publish, recipient) key drops them;
- ``only``: no device is planned; each ``user`` recipient with no session reached gets one
  ``skipped`` record (``offline``), and planning ends in the same transaction.

A crash after the emit and before the commit re-emits on the next claim (at least once: a client
dedupes by ``delivery_id``).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from pushgate.domain import clock
from pushgate.domain.jobs import PlanPayload, RealtimePass
from pushgate.domain.status import PublishStatus
from pushgate.realtime.delivery import Reach, RealtimeDelivery
from pushgate.realtime.gateway import channel_room, user_room
from pushgate.store.db import Database
from pushgate.store.publishes import Publish, PublishStore
from pushgate.store.queue import Job, JobQueue, LeaseLost
from pushgate.store.realtime_deliveries import RealtimeDeliveries

log = logging.getLogger("pushgate.engine")

#: The ``realtime`` values that reach sessions (``off`` is stored as no ``realtime`` at all).
MODES = ("also", "first", "only")


def mode_of(request: dict[str, Any]) -> str | None:
    """The publish's realtime mode, None when off."""
    mode = request.get("realtime")
    return mode if mode in MODES else None


def rooms_of(app_id: str, recipients: list[dict[str, Any]]) -> dict[str, str | None]:
    """The rooms a publish reaches: its users' (→ None) and its channels' (→ the channel).
    Other recipient kinds (devices, tokens, filters) stand for no session."""
    rooms: dict[str, str | None] = {}
    for r in recipients:
        if r["type"] == "user":
            rooms[user_room(app_id, r["user"])] = None
        elif r["type"] == "channel":
            rooms.setdefault(channel_room(app_id, r["channel"]), r["channel"])
    return rooms


def personal_of(request: dict[str, Any]) -> dict[str, Any] | None:
    """What a personalized publish's sessions render their notification from (None: not one)."""
    if request.get("template") is None and not request.get("localizations"):
        return None
    keys = ("notification", "providers", "template", "localizations")
    return {k: request[k] for k in keys if k in request}


class RealtimeStage:
    def __init__(self, db: Database, publishes: PublishStore, lease_seconds: float) -> None:
        self.db = db
        self.publishes = publishes
        self.store = RealtimeDeliveries(db, publishes)
        self.lease_seconds = lease_seconds
        #: How the sessions are reached (set by the process: its gateway, or Redis; None: none).
        self.delivery: RealtimeDelivery | None = None

    async def run(self, job: Job[PlanPayload], pub: Publish) -> bool:
        """Reach the publish's sessions and record them. True: plan the devices now (the job's
        payload carries the stage); False: the job is done (``only``, or the publish was
        cancelled). Raises :class:`LeaseLost` when another claim took the job over."""
        mode = mode_of(pub.request)
        recipients: list[dict[str, Any]] = pub.request.get("recipients", [])
        now = clock.now()
        reach = Reach()
        expired = pub.expire_at is not None and now >= pub.expire_at
        if self.delivery is not None and not expired:
            payload = {"publish_id": pub.id, "notification": pub.request.get("notification") or {}}
            rooms = rooms_of(pub.app_id, recipients)
            reach = await self.delivery.deliver(pub.app_id, pub.id, rooms, payload, personal_of(pub.request))
        reached = reach.sent
        stats = job.payload.stats
        async with self.db.write() as conn:
            await self.publishes.mark_started(conn, pub.id)
            status = await self.publishes.status_locked(conn, pub.id, exclusive=mode == "only")
            if status == PublishStatus.CANCELLED:
                return False
            new = await self.store.record_sessions(conn, pub.id, [sid for sid, _ in reached], now)
            stats.planned += new
            stats.dispatched += new
            stats.planned += await self.store.record_unrendered(conn, pub.id, reach.failed, now)
            online = {user for _, user in reached}  # a session got the event
            if mode == "only":
                present = online | {user for _, user, _ in reach.failed}  # had a session at all
                offline = [r["user"] for r in recipients if r["type"] == "user" and r["user"] not in present]
                stats.planned += await self.store.record_offline(conn, pub.app_id, pub.id, offline, now)
                await self.publishes.set_planning_done(conn, pub.id)
                if not await JobQueue.delete_claimed(conn, job.id, job.claims):
                    raise LeaseLost(job.id)
                await self.publishes.end_planning(conn, pub.id, stats)
                return False
            waiting = sorted(online) if mode == "first" else []
            stage = RealtimePass(1 if waiting else 2, waiting, now)
            job.payload = msgspec.structs.replace(job.payload, i=0, cursor=None, stats=stats, realtime=stage)
            lease = now + self.lease_seconds
            if not await JobQueue.save_progress(conn, job.id, job.claims, job.payload, lease):
                raise LeaseLost(job.id)
        log.debug("publish %s reached %d realtime sessions (%s)", pub.id, len(reached), mode)
        return True
