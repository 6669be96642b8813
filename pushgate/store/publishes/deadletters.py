"""Dead letters: deliveries that failed on a retryable cause, listed and put back in the queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from pushgate.domain import clock
from pushgate.store.dialect import lock_rows
from pushgate.store.publishes.model import DeadLetter, Repository
from pushgate.store.publishes.outcomes import bump
from pushgate.store.queue import JobQueue
from pushgate.store.schema import deliveries, devices, publishes


class DeadLetters(Repository):
    async def dead_letters(
        self,
        app_id: str,
        *,
        provider: str | None,
        publish_id: str | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[DeadLetter], tuple[str, str] | None]:
        """Dead deliveries of the app's publishes, ordered by (publish, recipient)."""
        cond = [deliveries.c.dead.is_(True), publishes.c.app_id == app_id]
        if provider:
            cond.append(deliveries.c.provider == provider)
        if publish_id:
            cond.append(deliveries.c.publish_id == publish_id)
        if after:
            cond.append(sa.tuple_(deliveries.c.publish_id, deliveries.c.recipient_id) > sa.tuple_(*after))
        q = (
            sa.select(deliveries)
            .join(publishes, publishes.c.id == deliveries.c.publish_id)
            .where(*cond)
            .order_by(deliveries.c.publish_id, deliveries.c.recipient_id)
            .limit(limit + 1)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        items = [
            DeadLetter(
                r.publish_id,
                r.recipient_id,
                r.device_id,
                r.provider,
                r.attempts,
                r.error_code,
                r.error_message,
                r.updated_at,
                r.error_class,
            )
            for r in rows[:limit]
        ]
        nxt = (items[-1].publish_id, items[-1].recipient_id) if len(rows) > limit else None
        return items, nxt

    async def dead_for_replay(
        self,
        app_id: str,
        *,
        keys: Sequence[tuple[str, str]] | None,
        provider: str | None,
        publish_id: str | None,
        limit: int,
    ) -> list[Any]:
        """Dead deliveries to replay, with what is needed to rebuild their targets.

        Rows carry ``publish_id, recipient_id, device_id, provider, request`` (the publish's
        stored request, for raw tokens) and the device's ``token, environment, device_status``.
        Only publishes still open or ``completed`` qualify (a cancelled one stays cancelled).
        """
        cond = [
            deliveries.c.dead.is_(True),
            deliveries.c.status == "failed",
            publishes.c.app_id == app_id,
            publishes.c.status.in_(("dispatching", "completed")),
        ]
        if keys is not None:
            if not keys:
                return []
            cond.append(sa.tuple_(deliveries.c.publish_id, deliveries.c.recipient_id).in_(list(keys)))
        if provider:
            cond.append(deliveries.c.provider == provider)
        if publish_id:
            cond.append(deliveries.c.publish_id == publish_id)
        q = (
            sa.select(
                deliveries.c.publish_id,
                deliveries.c.recipient_id,
                deliveries.c.device_id,
                deliveries.c.provider,
                publishes.c.request,
                devices.c.token,
                devices.c.environment,
                devices.c.status.label("device_status"),
            )
            .join(publishes, publishes.c.id == deliveries.c.publish_id)
            .outerjoin(devices, devices.c.id == deliveries.c.device_id)
            .where(*cond)
            .order_by(deliveries.c.publish_id, deliveries.c.recipient_id)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return list((await conn.execute(q)).all())

    async def requeue_dead(
        self,
        app_id: str,
        publish_id: str,
        provider: str,
        targets: Sequence[list[str]],
        batch_size: int,
    ) -> int:
        """Put dead deliveries back in the queue (attempt 1): ``failed`` → ``retrying``.

        Only rows still dead move (a concurrent replay cannot double them); a ``completed``
        publish is reopened so the dispatcher runs the jobs and closes it again.
        """
        by_id = {t[0]: t for t in targets}
        now = clock.now()
        async with self.db.write() as conn:
            # An exclusive row lock from the start: two replays of one publish taking it shared
            # and then both updating it would deadlock on PostgreSQL.
            status = (
                await conn.execute(
                    lock_rows(
                        self.db.dialect, sa.select(publishes.c.status).where(publishes.c.id == publish_id)
                    )
                )
            ).scalar()
            if status not in ("dispatching", "completed"):
                return 0
            rows = (
                await conn.execute(
                    sa.update(deliveries)
                    .where(
                        deliveries.c.publish_id == publish_id,
                        deliveries.c.recipient_id.in_(list(by_id)),
                        deliveries.c.dead.is_(True),
                        deliveries.c.status == "failed",
                    )
                    .values(status="retrying", dead=False, updated_at=now)
                    .returning(deliveries.c.recipient_id)
                )
            ).all()
            moved = [by_id[r.recipient_id] for r in rows]
            if not moved:
                return 0
            if status == "completed":
                await conn.execute(
                    sa.update(publishes)
                    .where(publishes.c.id == publish_id)
                    .values(status="dispatching", completed_at=None)
                )
            await bump(conn, self.db.dialect, publish_id, provider, failed=-len(moved), retrying=len(moved))
            # ``replay``: these recipients are counted as retrying already.
            await JobQueue.enqueue_dispatch(
                conn, app_id, publish_id, provider, moved, batch_size=batch_size, replay=True
            )
        return len(moved)
