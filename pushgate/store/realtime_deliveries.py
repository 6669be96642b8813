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

from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.receipts import ReceiptEvent
from pushgate.domain.status import DeliveryStatus
from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.publishes.outcomes import bump
from pushgate.store.publishes.receipts import Receipt, Recorded
from pushgate.store.realtime_acks import add_ack
from pushgate.store.schema import deliveries
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
        the ``first`` mode (``realtime_acks``, once per user). One transaction for many: a
        broadcast's acks come back together, and one transaction each would queue thousands of
        writes behind the database's write lock. Rows are touched in key order (as the
        dispatcher does), so two writers never wait on each other in a cycle. Returns what each
        receipt changed, in ``acks``' order (``not_found`` while the emitting worker has not
        committed the session's record yet)."""
        order = sorted(range(len(acks)), key=lambda i: (acks[i].publish_id, acks[i].sid))
        out: list[Recorded | None] = [None] * len(acks)
        async with self.db.write() as conn:
            for i in order:
                a = acks[i]
                await add_ack(conn, self.db.dialect, a.publish_id, a.user, a.at)
                receipt = Receipt(a.publish_id, session_recipient(a.sid), ReceiptEvent.DELIVERED, a.at)
                out[i] = await self.publishes.record_receipt(conn, a.app_id, receipt, webhooks=self.webhooks)
        return [r for r in out if r is not None]
