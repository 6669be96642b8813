"""Planning: resolve a publish's recipients page by page into dispatch batches.

The whole audience is never in memory: each page of devices becomes delivery records and
dispatch jobs in one transaction that also saves the planner's cursor, so a crash resumes at
the page it was on and the (publish, recipient) key drops anything already planned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.domain.jobs import DispatchPayload, PlanPayload, PlanStats, dispatch_batches
from pushgate.domain.status import PublishStatus
from pushgate.store.audience import Audience
from pushgate.store.db import Database
from pushgate.store.publishes import Publish, PublishStore
from pushgate.store.publishes.policy import PagePolicy
from pushgate.store.queue import Job, JobQueue, LeaseLost


@dataclass(slots=True)
class PlanContext:
    app_name: str
    configured: set[str]
    batch_size: int
    page_size: int
    lease_seconds: float
    #: Devices last seen before this epoch time are skipped (``devices.max_inactive_days``).
    seen_after: float | None = None
    #: The worker's lease owner: the publish's last batch is enqueued claimed by it, to be run by
    #: the same worker right away (None: every batch goes through the queue).
    owner: str | None = None
    #: The publish's policy, read once per plan job (None: every row goes now).
    policy: PagePolicy | None = None
    #: ``realtime: first``, first pass: these users' rows are left out (a session of theirs got
    #: the notification: their devices wait for the ack timeout, ``engine/realtime_stage.py``).
    hold_back: frozenset[str] = frozenset()
    #: When set, the last page does not end planning: the job is saved for a second pass from
    #: the first recipient and given back to run at this time.
    next_pass_at: float | None = None


class Planner:
    def __init__(self, db: Database, publishes: PublishStore, on_batches: Callable[[], None]) -> None:
        self.db = db
        self.publishes = publishes
        self.audience = Audience(db)
        #: Called after each committed page so idle workers start sending while planning goes on.
        self.on_batches = on_batches

    async def run(self, job: Job[PlanPayload], pub: Publish, ctx: PlanContext) -> Job[DispatchPayload] | None:
        """Plan the publish; the plan job is gone when this returns.

        Returns the publish's last dispatch batch when it was enqueued already claimed by
        ``ctx.owner`` (the caller runs it at once), else None. Raises :class:`LeaseLost` (the
        page rolled back) when another claim took the job over.
        """
        recipients: list[dict[str, Any]] = pub.request.get("recipients", [])
        i, cursor, stats = job.payload.i, job.payload.cursor, job.payload.stats
        while i < len(recipients):
            entry = recipients[i]
            async for rows, after in self.audience.pages(
                pub.app_id, entry, cursor, ctx.page_size, ctx.seen_after
            ):
                next_i, next_cursor = (i, after) if after is not None else (i + 1, None)
                # The page that ends the publish's audience also ends its planning, in one commit.
                last = next_i >= len(recipients)
                if not rows and not last:
                    continue  # nothing to write (a resumed run reads this empty page again)
                saved = msgspec.structs.replace(job.payload, i=next_i, cursor=next_cursor, stats=stats)
                done = await self._commit_page(job, pub, ctx, rows, saved, last=last)
                if done is False:
                    return None  # cancelled: the cancel deleted this job and closed the publish
                self.on_batches()
                if last:
                    # Straight to the inline batch: yielding here would let a cancel commit
                    # between the last page and its first send.
                    return done if isinstance(done, Job) else None
                # SQLite statements run on the event loop's thread and an uncontended lock does
                # not yield: without this a 1M-recipient plan held the loop for 14 s (no
                # dispatch, no API answers) until its last page.
                await asyncio.sleep(0)
            i, cursor = i + 1, None
        async with self.db.write() as conn:  # no recipients at all
            if ctx.next_pass_at is not None:
                await self._next_pass(conn, job, job.payload, ctx.next_pass_at)
            else:
                await self._finish(conn, job, pub, stats)
        return None

    async def _next_pass(
        self, conn: AsyncConnection, job: Job[PlanPayload], cursor: PlanPayload, run_at: float
    ) -> None:
        """End ``realtime: first``'s first pass inside ``conn``'s transaction: the job restarts
        from the first recipient at ``run_at`` (the ack timeout), its totals kept."""
        rt = cursor.realtime
        second = msgspec.structs.replace(
            cursor, i=0, cursor=None, realtime=None if rt is None else msgspec.structs.replace(rt, stage=2)
        )
        saved = await JobQueue.save_progress(conn, job.id, job.claims, second, run_at)
        if not saved or not await JobQueue.defer(conn, job.id, job.claims, job.progress, run_at):
            raise LeaseLost(job.id)

    async def _finish(
        self, conn: AsyncConnection, job: Job[PlanPayload], pub: Publish, stats: PlanStats
    ) -> None:
        """End planning inside ``conn``'s transaction: the publish is marked started (a no-op
        after the first page), planning done, the plan job deleted, and a publish with nothing
        left to send closed (or failed when no targeted provider has credentials)."""
        await self.publishes.mark_started(conn, pub.id)
        await self.publishes.set_planning_done(conn, pub.id)
        if not await JobQueue.delete_claimed(conn, job.id, job.claims):
            raise LeaseLost(job.id)
        await self.publishes.end_planning(conn, pub.id, stats)

    async def _commit_page(
        self,
        job: Job[PlanPayload],
        pub: Publish,
        ctx: PlanContext,
        rows: list[dict[str, Any]],
        cursor: PlanPayload,
        *,
        last: bool = False,
    ) -> bool | Job[DispatchPayload]:
        """Commit one page; False (and nothing written) when the publish was cancelled.

        ``cursor``: where the next page starts, saved with this one. ``last``: the page ends
        planning (:meth:`_finish` in the same transaction), and its last dispatch batch is
        enqueued claimed by ``ctx.owner`` and returned, for the caller to run.
        """
        now = clock.now()
        if ctx.hold_back:
            rows = [r for r in rows if r.get("user") not in ctx.hold_back]
        async with self.db.write() as conn:
            # Checked under the publish's shared lock: a cancel is either seen here or waits
            # for this page, whose pending records it then cancels.
            # The publish row is locked before the counters, as in every transaction that
            # touches both (PostgreSQL would otherwise deadlock against a dispatcher): the first
            # page's ``accepted`` → ``dispatching`` and the last page's closing update it, so
            # those take it exclusively.
            await self.publishes.mark_started(conn, pub.id)
            status = await self.publishes.status_locked(conn, pub.id, exclusive=last)
            if status == PublishStatus.CANCELLED:
                return False
            batches = await self.publishes.plan_rows(
                conn,
                pub.id,
                rows,
                cursor.stats,
                expired=pub.expire_at is not None and now >= pub.expire_at,
                configured=ctx.configured,
                app_name=ctx.app_name,
                policy=ctx.policy,
                batch_size=ctx.batch_size,
            )
            inline: Job[DispatchPayload] | None = None
            if last and batches and ctx.owner is not None:
                # The publish's very last batch goes to this worker, claimed in this commit.
                provider, targets = list(batches.items())[-1]
                cut = (len(targets) - 1) // ctx.batch_size * ctx.batch_size
                batches[provider] = targets[:cut]
                [mine] = dispatch_batches(provider, targets[cut:])
                inline = await JobQueue.enqueue_claimed(
                    conn, pub.app_id, pub.id, mine, ctx.owner, ctx.lease_seconds
                )
            for provider, targets in batches.items():
                await JobQueue.enqueue_dispatch(
                    conn, pub.app_id, pub.id, provider, targets, batch_size=ctx.batch_size
                )
            if last and ctx.next_pass_at is not None:
                await self._next_pass(conn, job, cursor, ctx.next_pass_at)
            elif last:
                await self._finish(conn, job, pub, cursor.stats)
            elif not await JobQueue.save_progress(conn, job.id, job.claims, cursor, now + ctx.lease_seconds):
                raise LeaseLost(job.id)  # rolls this page back: the new claim plans it
        return inline if inline is not None else True
