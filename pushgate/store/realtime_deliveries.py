"""Realtime deliveries and acks in the database (docs/realtime.md, "Realtime as a delivery path").

A session a publish's ``notification`` event reached is a delivery record like any other, so the
publish's counts, its delivery list and the receipts read it unchanged: recipient ``ses_<sid>``,
no device, provider ``realtime``, ``sent`` when the event was emitted. A user that ``only``
could not reach is one ``skipped`` record (``offline``). A session's ack is that delivery's
``delivered`` receipt and a row of ``realtime_acks`` (publish, user): what the ``first`` mode's
second planning pass reads to leave that user's devices out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.receipts import ReceiptEvent
from pushgate.domain.status import DeliveryStatus
from pushgate.domain.timefmt import rfc3339
from pushgate.domain.webhooks import EventType
from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts, lock_rows
from pushgate.store.publishes.outcomes import bump
from pushgate.store.publishes.receipts import ReceiptResult, Recorded, move_counters
from pushgate.store.schema import deliveries, publishes, realtime_acks
from pushgate.store.webhooks import WebhookStore

if TYPE_CHECKING:
    from pushgate.store.publishes import PublishStore

#: The provider name realtime deliveries are recorded and counted under.
PROVIDER = "realtime"
#: Outcome of an ``only`` user with no open session (``skipped``).
OFFLINE = "offline"


def session_recipient(sid: str) -> str:
    """A session's delivery id: what the ``notification`` event carries as ``delivery_id``."""
    return f"ses_{sid}"


def user_recipient(app_id: str, user: str) -> str:
    """The recipient id of a user that no session stood for (``offline``): hashed, so the
    record's key never exceeds its column whatever the user's name."""
    return "usr_" + hashlib.sha256(f"{app_id}|{user}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Ack:
    """A session's ack of a publish's ``notification`` event, when it came."""

    app_id: str
    publish_id: str
    sid: str
    user: str
    at: float


class RealtimeDeliveries:
    """Records the sessions a publish reached and their acks."""

    def __init__(self, db: Database, publishes: PublishStore) -> None:
        self.db = db
        self.publishes = publishes
        #: An ack is a ``delivered`` receipt: the app's ``receipt`` webhooks hear of it too.
        self.webhooks = WebhookStore(db)

    async def record_sessions(
        self, conn: AsyncConnection, publish_id: str, sids: Sequence[str], now: float
    ) -> int:
        """One ``sent`` record per session, inside the caller's transaction; returns how many
        were new (a re-run after a crash re-emits, and counts a session once)."""
        rows = [
            {
                "publish_id": publish_id,
                "recipient_id": session_recipient(sid),
                "device_id": None,
                "provider": PROVIDER,
                "status": DeliveryStatus.SENT.value,
                "attempts": 1,
                "sent_at": now,
                "updated_at": now,
            }
            for sid in dict.fromkeys(sids)
        ]
        new = await self._insert(conn, rows)
        await bump(conn, self.db.dialect, publish_id, PROVIDER, planned=new, sent=new)
        return new

    async def record_unrendered(
        self, conn: AsyncConnection, publish_id: str, failed: Sequence[tuple[str, str, str]], now: float
    ) -> int:
        """One ``failed`` record (``template_error``, class ``payload``: the same template fails
        the same way again, so it is final) per session ``(sid, user, why)`` whose personalized
        notification did not render; returns how many were new."""
        rows = [
            {
                "publish_id": publish_id,
                "recipient_id": session_recipient(sid),
                "device_id": None,
                "provider": PROVIDER,
                "status": DeliveryStatus.FAILED.value,
                "error_code": "template_error",
                "error_class": "payload",
                "error_message": why[:1000],
                "attempts": 0,
                "updated_at": now,
            }
            for sid, _user, why in {f[0]: f for f in failed}.values()
        ]
        new = await self._insert(conn, rows)
        await bump(conn, self.db.dialect, publish_id, PROVIDER, planned=new, failed=new)
        return new

    async def record_offline(
        self, conn: AsyncConnection, app_id: str, publish_id: str, users: Collection[str], now: float
    ) -> int:
        """One ``skipped`` (``offline``) record per user of an ``only`` publish that no session
        stood for; returns how many were new."""
        rows = [
            {
                "publish_id": publish_id,
                "recipient_id": user_recipient(app_id, user),
                "device_id": None,
                "provider": PROVIDER,
                "status": DeliveryStatus.SKIPPED.value,
                "error_code": OFFLINE,
                "error_message": f"user {user!r} had no open realtime session (realtime: only)",
                "attempts": 0,
                "updated_at": now,
            }
            for user in sorted(set(users))
        ]
        new = await self._insert(conn, rows)
        await bump(conn, self.db.dialect, publish_id, PROVIDER, planned=new, skipped=new)
        return new

    async def _insert(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        stmt = insert_ignoring_conflicts(self.db.dialect, deliveries, ("publish_id", "recipient_id"))
        result = await conn.execute(stmt.returning(deliveries.c.recipient_id), rows)
        return len(result.all())

    async def record_acks(self, acks: Sequence[Ack]) -> list[Recorded]:
        """Sessions acked their ``notification``: in one transaction, each session's delivery
        gets its ``delivered`` receipt (set and counted once) and its user counts as acked for
        the ``first`` mode (``realtime_acks``, once per user), with the ``receipt`` webhook
        events. In bulk: a broadcast's acks come back together, and a transaction (or even a few
        statements) per ack queued thousands of writes behind the database's write lock and held
        the event loop the sessions' events go out on. Delivery rows are locked in key order and
        the counters moved after the last of them (as ``record_receipts`` does), so two writers
        never wait on each other in a cycle. Returns what each ack changed, in ``acks``' order
        (``not_found`` while the emitting worker has not committed the session's record yet, or
        for a publish of another app)."""
        out = [Recorded(ReceiptResult.NOT_FOUND)] * len(acks)
        by_publish: dict[tuple[str, str], list[int]] = {}
        for i, a in enumerate(acks):
            by_publish.setdefault((a.publish_id, a.app_id), []).append(i)
        counters: dict[tuple[str, str], int] = {}
        async with self.db.write() as conn:
            for (publish_id, app_id), idx in sorted(by_publish.items()):
                owned = sa.select(publishes.c.id).where(
                    publishes.c.id == publish_id, publishes.c.app_id == app_id
                )
                if await conn.scalar(owned) is None:
                    continue
                first: dict[str, Ack] = {}
                for i in idx:
                    first.setdefault(acks[i].user, acks[i])
                # In key order, as the delivery rows: another node's batch takes the same users.
                stmt = insert_ignoring_conflicts(self.db.dialect, realtime_acks, ("publish_id", "user"))
                rows = [{"publish_id": publish_id, "user": u, "acked_at": first[u].at} for u in sorted(first)]
                await conn.execute(stmt, rows)
                found = await self._locked(
                    conn, publish_id, sorted({session_recipient(acks[i].sid) for i in idx})
                )
                new: dict[str, int] = {}
                for i in idx:
                    rid = session_recipient(acks[i].sid)
                    if rid not in found:
                        continue
                    provider, done = found[rid]
                    if done is None and rid not in new:
                        new[rid] = i
                        out[i] = Recorded(ReceiptResult.RECORDED, (ReceiptEvent.DELIVERED,), provider, None)
                    else:
                        out[i] = Recorded(ReceiptResult.DUPLICATE, (), provider, None)
                if not new:
                    continue
                await conn.execute(
                    sa.update(deliveries)
                    .where(
                        deliveries.c.publish_id == publish_id,
                        deliveries.c.recipient_id == sa.bindparam("rid"),
                        deliveries.c.delivered_at.is_(None),
                    )
                    .values(delivered_at=sa.bindparam("at")),
                    [{"rid": rid, "at": acks[i].at} for rid, i in sorted(new.items())],
                )
                for rid, i in new.items():
                    key = (publish_id, found[rid][0])
                    counters[key] = counters.get(key, 0) + 1
                    data = {"publish_id": publish_id, "delivery_id": rid, "device_id": None,
                            "event": ReceiptEvent.DELIVERED.value, "at": rfc3339(acks[i].at)}  # fmt: skip
                    await self.webhooks.emit(conn, app_id, EventType.RECEIPT, data)
            for (publish_id, provider), n in sorted(counters.items()):
                await move_counters(conn, publish_id, provider, {ReceiptEvent.DELIVERED.value: n})
        return out

    async def _locked(
        self, conn: AsyncConnection, publish_id: str, rids: Sequence[str]
    ) -> dict[str, tuple[str, float | None]]:
        """The sessions' delivery rows (provider, delivered_at), locked in key order."""
        found: dict[str, tuple[str, float | None]] = {}
        for k in range(0, len(rids), 500):
            q = (
                sa.select(deliveries.c.recipient_id, deliveries.c.provider, deliveries.c.delivered_at)
                .where(
                    deliveries.c.publish_id == publish_id, deliveries.c.recipient_id.in_(rids[k : k + 500])
                )
                .order_by(deliveries.c.recipient_id)
            )
            for row in await conn.execute(lock_rows(self.db.dialect, q)):
                found[row.recipient_id] = (row.provider, row.delivered_at)
        return found
