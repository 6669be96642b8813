"""The durable job queue: a table, claimed with a lease.

A claim is one ``UPDATE … WHERE id IN (SELECT … [FOR UPDATE SKIP LOCKED]) RETURNING``, so any
number of worker processes share the work, and the apps take turns (``store/claims.py``); a job
whose worker died is claimed again when its lease runs out (running jobs renew theirs). Jobs are
deleted in the same transaction that records their results.

Every write that belongs to a claim (progress, deferral, deletion, a plan's cursor) is guarded
by the claim number (``WHERE id = :id AND claims = :claims``) and says whether it still matched:
a ``False`` means another claim owns the job now, and the caller raises :class:`LeaseLost` to
roll its transaction back.

Convention (the whole ``store`` package): a method whose first parameter is ``conn`` runs in
the caller's transaction; a method without one opens its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.domain.jobs import (
    DispatchPayload,
    Payload,
    Unreadable,
    decode_payload,
    dispatch_batches,
    encode_payload,
    group_key,
)
from pushgate.store.claims import (
    apps_statement,
    claim_statement,
    delete_claimed_many_statement,
    group_claim_statement,
    renew_statement,
)
from pushgate.store.db import Database
from pushgate.store.schema import jobs

P = TypeVar("P", bound=Payload | Unreadable)
Q = TypeVar("Q", bound=Payload | Unreadable)


class LeaseLost(Exception):
    """Another claim took this job over (our lease lapsed): what this run did must not count,
    and the transaction that found out is rolled back."""


@dataclass(slots=True)
class Job(Generic[P]):
    id: int
    kind: str
    app_id: str
    publish_id: str
    payload: P
    #: How many times the job was claimed, this claim included (>1 means a worker died or gave it back).
    claims: int
    #: Dispatch jobs: how many leading targets already have a committed outcome.
    progress: int = 0
    #: Queued with a group key (a small publish's job): claimed with its company.
    grouped: bool = False

    @classmethod
    def from_row(cls, row: Any) -> Job[Payload | Unreadable]:
        """A claimed row, its payload decoded by kind (:class:`Unreadable` when it cannot be)."""
        return Job(
            int(row.id),
            row.kind,
            row.app_id,
            row.publish_id,
            decode_payload(row.kind, row.payload),
            int(row.claims),
            int(row.progress or 0),
            row.group_key is not None,
        )

    def typed(self, payload_type: type[Q]) -> Job[Q]:
        """This job, known to carry a ``payload_type`` (TypeError when it does not)."""
        if not isinstance(self.payload, payload_type):
            raise TypeError(
                f"job {self.id} carries {type(self.payload).__name__}, not {payload_type.__name__}"
            )
        return Job(
            self.id,
            self.kind,
            self.app_id,
            self.publish_id,
            self.payload,
            self.claims,
            self.progress,
            self.grouped,
        )


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert: its payload's type names its kind."""

    app_id: str
    publish_id: str
    payload: Payload
    #: Not before this epoch time (None: now).
    run_at: float | None = None
    #: Waiting out a quarantine (see ``defer``): woken when it lifts, not counted as pressure.
    deferred_by: str | None = None
    #: A small publish's dispatch job (admission's planning, or its retry): claimed with others
    #: of its app and provider (``engine/grouped.py``) if small enough (``group_key``).
    grouped: bool = False


# Prebuilt statements for the per-chunk hot path: built once, so SQLAlchemy finds them in its
# compiled cache without regenerating a cache key from a fresh statement object every call.
_INSERT_JOB = sa.insert(jobs)
_DELETE = sa.delete(jobs).where(jobs.c.id == sa.bindparam("jid"))
_DELETE_CLAIMED = sa.delete(jobs).where(jobs.c.id == sa.bindparam("jid"), jobs.c.claims == sa.bindparam("cl"))
_ADVANCE = (
    sa.update(jobs)
    .where(jobs.c.id == sa.bindparam("jid"), jobs.c.claims == sa.bindparam("cl"))
    .values(progress=sa.bindparam("pr"), lease_until=sa.bindparam("lu"))
)


#: Jobs due later than this (seconds) are not counted as admission backpressure.
PRESSURE_HORIZON = 60.0


class JobQueue:
    def __init__(self, db: Database) -> None:
        self.db = db
        #: The app this process claimed from last: the next claim starts with the app after it.
        self._after = ""

    @staticmethod
    async def enqueue(conn: AsyncConnection, new: Sequence[NewJob]) -> None:
        """Insert jobs (one statement for all of them)."""
        if not new:
            return
        now = clock.now()
        await conn.execute(
            _INSERT_JOB,
            [
                {
                    "kind": j.payload.KIND,
                    "app_id": j.app_id,
                    "publish_id": j.publish_id,
                    "payload": encode_payload(j.payload),
                    "run_at": j.run_at or now,
                    "created_at": now,
                    "deferred_by": j.deferred_by,
                    "group_key": group_key(j.payload) if j.grouped else None,
                }
                for j in new
            ],
        )

    @staticmethod
    async def enqueue_dispatch(
        conn: AsyncConnection,
        app_id: str,
        publish_id: str,
        provider: str,
        targets: Sequence[list[str]] | Mapping[float, Sequence[list[str]]],
        *,
        attempt: int = 1,
        batch_size: int | None = None,
        replay: bool = False,
        deferred_by: str | None = None,
        grouped: bool = False,
        held: bool = False,
        since: float | None = None,
    ) -> None:
        """Queue ``targets`` (``Target.row()`` lists) for ``provider`` in jobs of at most
        ``batch_size`` (None: one job per run time): the planner's batches, a replay, or a
        chunk's retries. A list runs now; a mapping gives each group its run time (retries are
        jittered, so a chunk's come back as many groups, still written in one statement).
        ``held``: release batches of recipients policy holds until their run time (due since
        then, unless ``since`` says otherwise). ``since``: when the recipients became due."""
        groups = targets.items() if isinstance(targets, Mapping) else [(None, targets)]
        await JobQueue.enqueue(
            conn,
            [
                NewJob(app_id, publish_id, payload, run_at, deferred_by, grouped)
                for run_at, group in groups
                for payload in dispatch_batches(
                    provider,
                    group,
                    attempt=attempt,
                    size=batch_size,
                    replay=replay,
                    held=held,
                    since=since if since is not None or not held else run_at,
                )
            ],
        )

    @staticmethod
    async def enqueue_claimed(
        conn: AsyncConnection,
        app_id: str,
        publish_id: str,
        payload: DispatchPayload,
        owner: str,
        lease_seconds: float,
    ) -> Job[DispatchPayload]:
        """Enqueue a dispatch job already claimed by ``owner`` (claim number 1), for the caller
        to run right after its transaction commits: no claim round trip, no wake-up. If the
        caller dies, the lease runs out and any worker claims it as usual."""
        now = clock.now()
        job_id = (
            await conn.execute(
                _INSERT_JOB.returning(jobs.c.id),
                {
                    "kind": payload.KIND,
                    "app_id": app_id,
                    "publish_id": publish_id,
                    "payload": encode_payload(payload),
                    "run_at": now,
                    "created_at": now,
                    "lease_until": now + lease_seconds,
                    "lease_owner": owner,
                    "claims": 1,
                },
            )
        ).scalar_one()
        return Job(int(job_id), payload.KIND, app_id, publish_id, payload, 1, 0)

    async def claim(
        self, owner: str, limit: int, lease_seconds: float, skip_apps: Collection[str] = ()
    ) -> list[Job[Payload | Unreadable]]:
        """Claim up to ``limit`` due jobs, the apps taking turns (:func:`claim_statement`),
        none of an app in ``skip_apps``."""
        now = clock.now()
        stmt = claim_statement(self.db.dialect)
        params = {
            "now": now,
            "lim": limit,
            "until": now + lease_seconds,
            "owner": owner,
            "after": self._after,
            "skip": list(skip_apps),
        }
        async with self.db.write() as conn:
            rows = (await conn.execute(stmt, params)).all()
        if rows:
            # The rotation goes on after the last app served (in rotation order from ``_after``).
            apps = sorted({r.app_id for r in rows}, key=lambda a: (a <= self._after, a))
            self._after = apps[-1]
        return [Job.from_row(r) for r in rows]

    async def claim_group(
        self, owner: str, first: Job[Payload | Unreadable], limit: int, lease_seconds: float
    ) -> list[Job[Payload | Unreadable]]:
        """Up to ``limit`` more due, never-claimed jobs of ``first``'s app and group (small
        dispatch jobs of one provider, :func:`~pushgate.domain.jobs.group_key`), oldest first,
        claimed by ``owner``: the worker sends them with ``first`` as one batch. Empty when
        ``first`` has no group."""
        payload = first.payload
        key = group_key(payload) if first.grouped and not isinstance(payload, Unreadable) else None
        if key is None or limit <= 0:
            return []
        now = clock.now()
        params = {
            "now": now,
            "lim": limit,
            "until": now + lease_seconds,
            "owner": owner,
            "app": first.app_id,
            "key": key,
        }
        async with self.db.write() as conn:
            rows = (await conn.execute(group_claim_statement(self.db.dialect), params)).all()
        return [Job.from_row(r) for r in rows]

    async def renew(self, owner: str, job_ids: Collection[int], lease_seconds: float) -> set[int]:
        """Extend ``owner``'s leases on ``job_ids`` (the heartbeat of running jobs); returns the
        ids still held. A missing one is done, or was taken over after its lease lapsed (an
        owner is one process: ``lease_owner`` tells its claims from every other's)."""
        params = {"owner": owner, "ids": list(job_ids), "until": clock.now() + lease_seconds}
        async with self.db.write() as conn:
            return {int(r.id) for r in (await conn.execute(renew_statement(self.db.dialect), params)).all()}

    async def taken_over(self, owner: str, job_ids: Collection[int]) -> set[int]:
        """Which of ``job_ids`` still exist under another claim than ``owner``'s."""
        mine = sa.and_(jobs.c.lease_owner.is_not(None), jobs.c.lease_owner == owner)
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(jobs.c.id).where(jobs.c.id.in_(list(job_ids)), ~mine))
            return {int(r.id) for r in rows}

    @staticmethod
    async def delete(conn: AsyncConnection, job_id: int) -> None:
        await conn.execute(_DELETE, {"jid": job_id})

    @staticmethod
    async def delete_claimed(conn: AsyncConnection, job_id: int, claims: int) -> bool:
        """Delete the job only if this claim still owns it (no other worker re-claimed it after
        our lease ran out); False means another claim took over and our results must not count."""
        res = await conn.execute(_DELETE_CLAIMED, {"jid": job_id, "cl": claims})
        return bool(res.rowcount)

    @staticmethod
    async def delete_claimed_many(conn: AsyncConnection, claimed: Collection[tuple[int, int]]) -> set[int]:
        """:meth:`delete_claimed` for many ``(job id, claims)`` in one statement; returns the ids
        this run still owned (and deleted): the others were taken over by another claim."""
        if not claimed:
            return set()
        by_claims: dict[int, list[int]] = {}
        for job_id, claims in claimed:
            by_claims.setdefault(claims, []).append(job_id)
        kept: set[int] = set()
        for claims, ids in by_claims.items():  # one statement: a group's jobs share their claim number
            rows = await conn.execute(
                delete_claimed_many_statement(conn.dialect.name), {"ids": ids, "cl": claims}
            )
            kept.update(int(r.id) for r in rows.all())
        return kept

    @staticmethod
    async def advance(
        conn: AsyncConnection, job_id: int, claims: int, progress: int, lease_seconds: float
    ) -> bool:
        """Commit a dispatch job's progress with the outcomes it covers (and extend the lease);
        False when another claim has taken the job over."""
        res = await conn.execute(
            _ADVANCE, {"jid": job_id, "cl": claims, "pr": progress, "lu": clock.now() + lease_seconds}
        )
        return bool(res.rowcount)

    @staticmethod
    async def defer(
        conn: AsyncConnection,
        job_id: int,
        claims: int,
        progress: int,
        run_at: float,
        deferred_by: str | None = None,
    ) -> bool:
        """Give the job back to run at ``run_at`` (quarantine, rate limit), keeping its progress.

        A deferral is not a failed run: it is counted in ``deferrals`` and the poison check
        (``MAX_CLAIMS``) subtracts it. ``claims`` itself only ever grows: it fences a stale
        claim out, and handing one back would let a lapsed claim match again. False when
        another claim owns the job.
        """
        res = await conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == job_id, jobs.c.claims == claims)
            .values(
                progress=progress,
                run_at=run_at,
                lease_until=None,
                lease_owner=None,
                deferrals=jobs.c.deferrals + 1,
                deferred_by=deferred_by,
            )
        )
        return bool(res.rowcount)

    async def deferrals(self, job_id: int) -> int:
        """How many of the job's claims ended in a deferral (read only for the poison check)."""
        async with self.db.read() as conn:
            n = (await conn.execute(sa.select(jobs.c.deferrals).where(jobs.c.id == job_id))).scalar()
        return int(n or 0)

    @staticmethod
    async def delete_for_publish(conn: AsyncConnection, publish_id: str) -> None:
        """Drop a publish's jobs (cancel); a batch in flight finds its job gone, which is harmless."""
        await conn.execute(sa.delete(jobs).where(jobs.c.publish_id == publish_id))

    @staticmethod
    async def save_progress(
        conn: AsyncConnection, job_id: int, claims: int, payload: Payload, lease_until: float
    ) -> bool:
        """Persist a long job's cursor together with the work it produced (crash-safe resume).

        Guarded by the claim like :meth:`advance`: False when another claim has taken the job
        over, and the caller must roll the page back (it would be planned twice).
        """
        res = await conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == job_id, jobs.c.claims == claims)
            .values(payload=encode_payload(payload), lease_until=lease_until)
        )
        return bool(res.rowcount)

    async def release(self, owner: str) -> None:
        """Give back this owner's leases (graceful shutdown) so another worker starts at once."""
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(jobs).where(jobs.c.lease_owner == owner).values(lease_until=None, lease_owner=None)
            )

    async def next_due(self) -> float | None:
        """When the earliest unleased job becomes runnable (lets idle workers sleep precisely)."""
        async with self.db.read() as conn:
            return (
                await conn.execute(sa.select(sa.func.min(jobs.c.run_at)).where(jobs.c.lease_until.is_(None)))
            ).scalar()

    async def depth(self) -> int:
        async with self.db.read() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar() or 0)

    async def apps_with_jobs(self) -> list[tuple[str, str | None]]:
        """``(id, name)`` of the apps that have jobs in the queue (one index probe per app)."""
        async with self.db.read() as conn:
            return [(r.app_id, r.name) for r in (await conn.execute(apps_statement())).all()]

    async def pressure(self, app_id: str, count_up_to: int) -> tuple[int, float | None]:
        """``(the app's jobs in the queue, run_at of its oldest runnable unleased job)`` for
        admission backpressure, which is per app: another app's backlog is not this one's.

        The count stops at ``count_up_to`` (0: not counted), so it costs at most that many
        index entries however deep the app's backlog is. Jobs waiting out a provider's
        quarantine (``deferred_by``) are not counted: they are not work the workers are behind
        on, and a broken credential must not turn into 429s. Nor are jobs due more than
        :data:`PRESSURE_HORIZON` seconds from now (scheduled publishes, release batches that policy
        holds until tomorrow's window): a million notifications scheduled for tomorrow are not a
        backlog today.
        """
        now = clock.now()
        mine = jobs.c.app_id == app_id
        counted = (
            sa.select(jobs.c.id)
            .where(mine, jobs.c.run_at <= now + PRESSURE_HORIZON, jobs.c.deferred_by.is_(None))
            .limit(count_up_to)
        )
        due = (jobs.c.run_at <= now, sa.or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < now))
        async with self.db.read() as conn:
            count = sa.select(sa.func.count()).select_from(counted.subquery())
            depth = (await conn.execute(count)).scalar_one() if count_up_to > 0 else 0
            oldest = (await conn.execute(sa.select(sa.func.min(jobs.c.run_at)).where(mine, *due))).scalar()
        return int(depth or 0), (float(oldest) if oldest is not None else None)
