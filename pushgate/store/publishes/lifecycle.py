"""A publish's life after admission: started, planning done, closed, failed or cancelled.

Every transaction that updates the publish row and moves its counters locks the row first
(PostgreSQL deadlocks otherwise); outcome and planning transactions read the status under a
shared lock (:meth:`Lifecycle.status_locked`), so a cancel or a failure waits for them and
every later one sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.domain.jobs import JobKind
from pushgate.domain.status import OPEN_DELIVERY, OPEN_PUBLISH, DeliveryStatus, PublishStatus
from pushgate.store.dialect import lock_rows
from pushgate.store.publishes.model import Publish
from pushgate.store.publishes.outcomes import bump
from pushgate.store.publishes.reads import Reads
from pushgate.store.queue import JobQueue
from pushgate.store.schema import deliveries, jobs, publish_stats, publishes

#: The publish statuses a cancel or a failure closes.
_OPEN = tuple(s.value for s in OPEN_PUBLISH)
_START = (
    sa.update(publishes)
    # ``scheduled``: its plan job came due (the planner's first page starts it).
    .where(publishes.c.id == sa.bindparam("pid"), publishes.c.status.in_(("accepted", "scheduled")))
    .values(status="dispatching", started_at=sa.bindparam("now"))
)
_FAIL = (
    sa.update(publishes)
    .where(publishes.c.id == sa.bindparam("pid"), publishes.c.status.in_(_OPEN))
    .values(
        status="failed",
        error_code=sa.bindparam("code"),
        error_message=sa.bindparam("msg"),
        completed_at=sa.bindparam("now"),
    )
)
_CLOSE = (
    sa.update(publishes)
    .where(publishes.c.id == sa.bindparam("pid"), publishes.c.status == "dispatching")
    .values(status=sa.bindparam("st"), completed_at=sa.bindparam("now"))
)
_SET_PLANNING_DONE = (
    sa.update(publishes).where(publishes.c.id == sa.bindparam("pid")).values(planning_done=True)
)
_TOTALS = sa.select(
    sa.func.coalesce(sa.func.sum(publish_stats.c.planned), 0),
    sa.func.coalesce(
        sa.func.sum(
            publish_stats.c.sent
            + publish_stats.c.failed
            + publish_stats.c.invalid_token
            + publish_stats.c.expired
            + publish_stats.c.suppressed
            + publish_stats.c.skipped
            + publish_stats.c.dry_run
        ),
        0,
    ),
    sa.func.coalesce(sa.func.sum(publish_stats.c.expired), 0),
).where(publish_stats.c.publish_id == sa.bindparam("pid"))


def _stat_sum(expr: sa.ColumnElement[int]) -> sa.ScalarSelect[int]:
    """A publish's counter summed over its providers, correlated to the ``publishes`` row."""
    return (
        sa.select(sa.func.coalesce(sa.func.sum(expr), 0))
        .where(publish_stats.c.publish_id == publishes.c.id)
        .scalar_subquery()
    )


_PLANNED = _stat_sum(publish_stats.c.planned)
_EXPIRED = _stat_sum(publish_stats.c.expired)
_FINAL = _stat_sum(
    publish_stats.c.sent
    + publish_stats.c.failed
    + publish_stats.c.invalid_token
    + publish_stats.c.expired
    + publish_stats.c.suppressed
    + publish_stats.c.skipped
    + publish_stats.c.dry_run
)
#: :meth:`Lifecycle.close_if_done` for many publishes in one statement: those whose every
#: planned recipient is final close, ``expired`` when all of them expired.
_CLOSE_DONE = (
    sa.update(publishes)
    .where(
        publishes.c.id.in_(sa.bindparam("pids", expanding=True)),
        publishes.c.status == "dispatching",
        publishes.c.planning_done.is_(True),
        _FINAL >= _PLANNED,
    )
    .values(
        status=sa.case((sa.and_(_PLANNED > 0, _EXPIRED == _PLANNED), "expired"), else_="completed"),
        completed_at=sa.bindparam("now"),
    )
    .returning(publishes.c.id)
)


_SCHEDULED = PublishStatus.SCHEDULED.value
#: A scheduled publish's plan job moved to its new time, unless a worker holds it (then it is
#: starting: too late). A lapsed claim's worker is fenced out (``claims`` grows, so its writes
#: match no more), counted as a deferral so the poison check does not hold it against the job.
_RETIME_JOB = (
    sa.update(jobs)
    .where(
        jobs.c.publish_id == sa.bindparam("pid"),
        jobs.c.kind == JobKind.PLAN.value,
        sa.or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < sa.bindparam("now")),
    )
    .values(
        run_at=sa.bindparam("run_at"),
        claims=sa.case((jobs.c.lease_until.is_(None), jobs.c.claims), else_=jobs.c.claims + 1),
        deferrals=sa.case((jobs.c.lease_until.is_(None), jobs.c.deferrals), else_=jobs.c.deferrals + 1),
        lease_until=None,
        lease_owner=None,
    )
)
_RETIME_PUBLISH = (
    sa.update(publishes)
    .where(publishes.c.id == sa.bindparam("pid"))
    .values(send_at=sa.bindparam("send_at"), status=sa.bindparam("st"))
)


@lru_cache(maxsize=4)
def _own_status_locked(dialect: str) -> sa.Select:
    q = sa.select(publishes.c.status).where(
        publishes.c.id == sa.bindparam("pid"), publishes.c.app_id == sa.bindparam("app")
    )
    return lock_rows(dialect, q)


@lru_cache(maxsize=4)
def _closable_publish(dialect: str, lock: bool) -> sa.Select:
    q = sa.select(publishes.c.status, publishes.c.planning_done).where(publishes.c.id == sa.bindparam("pid"))
    return lock_rows(dialect, q) if lock else q


@lru_cache(maxsize=4)
def _statuses_locked(dialect: str) -> sa.Select:
    q = sa.select(publishes.c.id, publishes.c.status).where(
        publishes.c.id.in_(sa.bindparam("pids", expanding=True))
    )
    return lock_rows(dialect, q.order_by(publishes.c.id))


@lru_cache(maxsize=4)
def _status_locked(dialect: str, exclusive: bool) -> sa.Select:
    q = sa.select(publishes.c.status).where(publishes.c.id == sa.bindparam("pid"))
    return lock_rows(dialect, q, shared=not exclusive)


async def close_open_deliveries(
    conn: AsyncConnection,
    dialect: str,
    publish_id: str,
    to: DeliveryStatus,
    now: float,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    """Turn every ``pending``/``retrying`` delivery into ``to`` and move the counters.

    Counted with one grouped query and changed with one UPDATE, so a publish of millions of
    recipients never travels to Python. Callers hold the publish row (they just updated its
    status), so outcome and planning transactions, which take it shared, wait meanwhile.
    """
    open_states = [s.value for s in OPEN_DELIVERY]
    rows = (
        await conn.execute(
            sa.select(deliveries.c.provider, deliveries.c.status, sa.func.count())
            .where(deliveries.c.publish_id == publish_id, deliveries.c.status.in_(open_states))
            .group_by(deliveries.c.provider, deliveries.c.status)
        )
    ).all()
    if not rows:
        return
    values: dict[str, object] = {"status": to.value, "updated_at": now}
    if error_code is not None:
        values.update(error_code=error_code, error_message=error_message)
    await conn.execute(
        sa.update(deliveries)
        .where(deliveries.c.publish_id == publish_id, deliveries.c.status.in_(open_states))
        .values(**values)
    )
    moved: dict[str, dict[str, int]] = {}
    for provider, status, n in rows:
        c = moved.setdefault(provider, {to.value: 0, "retrying": 0, "held": 0})
        c[to.value] += int(n)
        if status in ("retrying", "held"):
            c[status] -= int(n)
    for provider, deltas in moved.items():
        await bump(conn, dialect, publish_id, provider, **deltas)


class Lifecycle(Reads):
    async def mark_started(self, conn: AsyncConnection, publish_id: str) -> None:
        """``accepted`` (or ``scheduled``) → ``dispatching`` (planning began)."""
        await conn.execute(_START, {"pid": publish_id, "now": clock.now()})

    async def set_planning_done(self, conn: AsyncConnection, publish_id: str) -> None:
        await conn.execute(_SET_PLANNING_DONE, {"pid": publish_id})

    async def fail(self, publish_id: str, code: str, message: str) -> None:
        """:meth:`fail_in`, in a transaction of its own."""
        async with self.db.write() as conn:
            await self.fail_in(conn, publish_id, code, message)

    async def fail_in(self, conn: AsyncConnection, publish_id: str, code: str, message: str) -> None:
        """Fail an open publish: everything not yet final fails with it and its jobs are dropped.

        Used when planning cannot proceed (or keeps crashing): dispatch jobs it already queued
        would otherwise be dropped unrecorded and leave their deliveries ``pending`` forever.
        """
        now = clock.now()
        res = await conn.execute(_FAIL, {"pid": publish_id, "code": code, "msg": message, "now": now})
        if res.rowcount:
            await close_open_deliveries(
                conn,
                self.db.dialect,
                publish_id,
                DeliveryStatus.FAILED,
                now,
                error_code=code,
                error_message=message,
            )
            await JobQueue.delete_for_publish(conn, publish_id)

    async def stuck(self, limit: int = 100) -> list[str]:
        """Publishes that are dispatching with planning done but no job left.

        Normally the last batch closes its publish right after its commit; if the process died
        in between (or that check failed), nothing else would, so a periodic sweep retries it.
        """
        q = (
            sa.select(publishes.c.id)
            .where(
                publishes.c.status == "dispatching",
                publishes.c.planning_done.is_(True),
                ~sa.exists().where(jobs.c.publish_id == publishes.c.id),
            )
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [r.id for r in (await conn.execute(q)).all()]

    async def finish_if_done(self, publish_id: str) -> str | None:
        """Close the publish once every planned recipient has a final outcome.

        Runs after the outcome transaction committed, so the last committer always sees all
        counts. A cheap read decides whether to try; the decision is then re-made inside the
        closing transaction with the publish row locked, so a dead-letter replay that reopened
        work in between is never closed over, and exactly one of several checkers wins.
        """
        async with self.db.read() as conn:
            if await self._closable(conn, publish_id) is None:
                return None
        async with self.db.write() as conn:
            return await self.close_if_done(conn, publish_id)

    async def close_if_done(self, conn: AsyncConnection, publish_id: str) -> str | None:
        """:meth:`finish_if_done`'s decision and update, inside the caller's write transaction
        (the planner closes an empty publish in the transaction that ends its planning)."""
        status = await self._closable(conn, publish_id, lock=True)
        if status is None:
            return None
        await conn.execute(_CLOSE, {"pid": publish_id, "st": status, "now": clock.now()})
        return status

    async def close_done_many(self, conn: AsyncConnection, publish_ids: Sequence[str]) -> list[str]:
        """Close, in the caller's write transaction, each of ``publish_ids`` whose every planned
        recipient is final (one statement); returns those closed. The caller holds the rows
        (:meth:`statuses_locked`), so no other outcome of theirs commits in between."""
        if not publish_ids:
            return []
        rows = await conn.execute(_CLOSE_DONE, {"pids": list(publish_ids), "now": clock.now()})
        return [r.id for r in rows.all()]

    async def statuses_locked(self, conn: AsyncConnection, publish_ids: Sequence[str]) -> dict[str, str]:
        """The statuses of several publishes inside a write transaction, their rows locked
        ``FOR UPDATE`` on PostgreSQL in id order (two such transactions over overlapping
        publishes lock them in the same order, so they queue instead of deadlocking). Exclusive
        rather than shared, unlike :meth:`status_locked`: the caller closes some of them in the
        same transaction, and two shared holders that both upgrade would deadlock."""
        q = _statuses_locked(self.db.dialect)
        return {r.id: r.status for r in (await conn.execute(q, {"pids": list(publish_ids)})).all()}

    async def _closable(self, conn: AsyncConnection, publish_id: str, *, lock: bool = False) -> str | None:
        """The status the publish should close with now (``completed``/``expired``), or None."""
        params = {"pid": publish_id}
        pub = (await conn.execute(_closable_publish(self.db.dialect, lock), params)).first()
        if pub is None or pub.status != "dispatching" or not pub.planning_done:
            return None
        planned, final, expired = (int(x) for x in (await conn.execute(_TOTALS, params)).one())
        if final < planned:
            return None
        return "expired" if planned > 0 and expired == planned else "completed"

    async def status_locked(
        self, conn: AsyncConnection, publish_id: str, *, exclusive: bool = False
    ) -> str | None:
        """The publish's status inside a write transaction, with a shared row lock on PostgreSQL.

        Outcome and planning transactions take it; :meth:`cancel` updates the row first, so a
        cancel waits for the transactions in progress and every later one sees ``cancelled``.
        (SQLite serialises writers anyway.) ``exclusive``: ``FOR UPDATE`` instead, for a transaction
        that will update the publish row after touching its counters (lock the row first, as
        every other transaction does, or two of them deadlock).
        """
        q = _status_locked(self.db.dialect, exclusive)
        return (await conn.execute(q, {"pid": publish_id})).scalar()

    async def cancel(self, app_id: str, publish_id: str) -> tuple[Publish | None, bool]:
        """Cancel an open publish (a scheduled one too): returns ``(publish, changed)``;
        ``(None, False)`` if unknown.

        In one transaction: the status, every ``pending``/``retrying``/``held`` delivery becomes
        ``cancelled`` (counters moved to match) and the publish's queued jobs are deleted.
        Batches already being sent finish and record their real outcome.
        """
        now = clock.now()
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.update(publishes)
                .where(
                    publishes.c.id == publish_id,
                    publishes.c.app_id == app_id,
                    publishes.c.status.in_(_OPEN),
                )
                .values(status="cancelled", completed_at=now)
            )
            changed = bool(res.rowcount)
            if changed:
                await close_open_deliveries(conn, self.db.dialect, publish_id, DeliveryStatus.CANCELLED, now)
                await JobQueue.delete_for_publish(conn, publish_id)
        return await self.get(app_id, publish_id), changed

    async def reschedule(self, app_id: str, publish_id: str, send_at: float) -> tuple[Publish | None, bool]:
        """Move a ``scheduled`` publish to ``send_at``: returns ``(publish, changed)``;
        ``(None, False)`` if unknown, ``changed`` False when it is no longer scheduled (or its
        plan job is already claimed: it is starting).

        One transaction with the publish row locked first (as every transaction that updates it
        locks it), so it is ordered against the planner's first page, which flips the status:
        either that page sees the new time's job (not due, not claimed) or this sees it started.
        A ``send_at`` not ahead of the clock means now: the publish becomes ``accepted``.
        """
        now = clock.now()
        changed = False
        async with self.db.write() as conn:
            params = {"pid": publish_id, "app": app_id}
            status = (await conn.execute(_own_status_locked(self.db.dialect), params)).scalar()
            if status is None:
                return None, False
            if status == _SCHEDULED:
                run_at = max(send_at, now)
                moved = await conn.execute(_RETIME_JOB, {"pid": publish_id, "now": now, "run_at": run_at})
                if moved.rowcount:
                    st = _SCHEDULED if send_at > now else PublishStatus.ACCEPTED.value
                    await conn.execute(_RETIME_PUBLISH, {"pid": publish_id, "send_at": send_at, "st": st})
                    changed = True
        return await self.get(app_id, publish_id), changed
