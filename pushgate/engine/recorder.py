"""Recording: one chunk's outcomes, in one transaction with everything they move.

Delivery records, counters, device invalidation, the retry jobs, the pair's health events and
breaker, and the job's progress (or its deferral, or its deletion) commit together, guarded by
the claim number: a crash before the commit re-runs the chunk (recipients already final are
skipped), a crash after it loses nothing, and a run whose job another claim took over records
nothing (:class:`LeaseLost`). A commit the database refuses (disk full, read-only) is retried
with the outcomes kept, and the process sends nothing new meanwhile (``engine/storage.py``).
What each target's answer means is decided by the pure ``domain/accounting.py``; this module
only writes it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.domain.accounting import Accounting, Attempt, Batch, DeliveryUpdate, account
from pushgate.domain.jobs import DispatchPayload
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.quarantine import CLOSED, OPEN, Breaker, by_scope, failed_by_origin
from pushgate.domain.status import PublishStatus
from pushgate.engine.quarantine import Quarantine
from pushgate.engine.storage import StorageGate
from pushgate.engine.webhooks import report_outcomes
from pushgate.metrics import DELIVERIES, RECORD_SECONDS
from pushgate.providers.base import Target
from pushgate.store.db import Database
from pushgate.store.devices import DeviceStore
from pushgate.store.health import ProviderHealthStore, wake_deferred
from pushgate.store.publishes import Publish, PublishStore
from pushgate.store.publishes.outcomes import bump_many
from pushgate.store.queue import Job, JobQueue, LeaseLost
from pushgate.store.webhooks import WebhookStore

log = logging.getLogger("pushgate.engine")


def _since(batch: Batch, pub: Publish) -> float | None:
    """What a retry (or a handed-back part) carries as ``since``: the batch's due time when it is
    later than the publish's admission (a release batch, a scheduled publish), so the retry
    ladder's age limit keeps counting from it."""
    return batch.created_at if batch.created_at > pub.created_at else None


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """One job of a group (``engine/grouped.py``): its targets and their answers, in order."""

    job: Job[DispatchPayload]
    pub: Publish
    batch: Batch
    targets: Sequence[Target]
    results: Sequence[Attempt]
    #: The push-service origin of each sent target (Web Push, WNS), or None for a provider
    #: without origins: their answers then move the origin's breaker, not the pair's.
    origins: Sequence[str | None] | None = None


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One chunk's answers as the dispatcher handed them over, kept until they are committed."""

    job: Job[DispatchPayload]
    pub: Publish
    batch: Batch
    targets: Sequence[Target]
    results: Sequence[Attempt]
    final: bool
    progress: int
    probing: bool
    stale_credential: bool
    now: float
    #: The real provider answers among ``results`` (none when not ``observed``).
    answered: list[SendResult]
    origins: Sequence[str | None] | None
    origin_probes: frozenset[str]
    held: Mapping[float, Sequence[Target]] | None

    @property
    def classes(self) -> Counter[str]:
        return Counter(r.outcome.value for r in self.answered)


class Recorder:
    """Writes outcomes for every dispatch job of the process (one per dispatcher)."""

    def __init__(
        self,
        db: Database,
        publishes: PublishStore,
        quarantine: Quarantine,
        health_store: ProviderHealthStore,
        lease_seconds: float,
    ) -> None:
        self.db = db
        self.publishes = publishes
        self.quarantine = quarantine
        self.health_store = health_store
        #: The job lease, renewed with each chunk so a slow provider never lets the job be
        #: claimed (and sent) a second time while it is still running.
        self.lease_seconds = lease_seconds
        #: Retries outcome commits while storage is down and holds the process's claims and
        #: sends meanwhile (the engine's claim loop and the dispatcher wait on it).
        self.storage = StorageGate(db)
        #: Failed and invalid-token outcomes become webhook events in their own transaction.
        self.webhooks = WebhookStore(db)

    def for_job(self, job: Job[DispatchPayload], pub: Publish, batch: Batch) -> JobRecorder:
        return JobRecorder(self, job, pub, batch)

    async def record(
        self,
        job: Job[DispatchPayload],
        pub: Publish,
        batch: Batch,
        targets: Sequence[Target],
        results: Sequence[Attempt],
        *,
        final: bool,
        progress: int,
        probing: bool = False,
        observed: bool = True,
        stale_credential: bool = False,
        origins: Sequence[str | None] | None = None,
        origin_probes: frozenset[str] = frozenset(),
        held: Mapping[float, Sequence[Target]] | None = None,
    ) -> float | None:
        """Commit one chunk's outcomes; returns when the job was deferred to, if the chunk's
        answers quarantined the pair (the rest of the job waits, no attempt spent).

        ``origins``: the push-service origin of each sent target (Web Push, WNS), whose
        answers then move that origin's breaker (``origin_probes``: the origins this chunk
        probed) rather than the pair's. ``held``: targets of quarantined origins, handed back
        as new jobs at their run times, in this transaction, with no attempt spent.

        ``observed``: these are real provider answers (not a local failure to build the
        request), so they count toward the pair's health and quarantine. ``stale_credential``:
        the chunk went out with a credential replaced meanwhile; its credential refusals are
        recorded but kept out of the breaker.
        """
        chunk = _Chunk(
            job, pub, batch, targets, results, final, progress, probing, stale_credential, clock.now(),
            [r for r in results[: len(targets)] if isinstance(r, SendResult)] if observed else [],
            origins, origin_probes, held,
        )  # fmt: skip
        started = time.perf_counter()
        # Sent is sent: keep these outcomes and retry their commit while storage is down, rather
        # than let the job be claimed again and the chunk sent twice (engine/storage.py).
        out, breaker, parked, origin_changes = await self.storage.commit(
            lambda: self._commit(chunk), f"recording outcomes of publish {pub.id}"
        )
        RECORD_SECONDS.observe(time.perf_counter() - started)
        if breaker is not None:
            # Only what committed is cached: a rolled-back change must not park the pair here.
            self.quarantine.remember(pub.app_id, batch.provider, breaker)
        self.quarantine.remember_origins(pub.app_id, batch.provider, origin_changes)
        for cls, n in chunk.classes.items():
            DELIVERIES.labels(batch.provider, cls).inc(n)
        if out.invalid:
            log.info(
                "marked %d %s device(s) invalid for publish %s", len(out.invalid), batch.provider, pub.id
            )
        return parked

    async def _commit(
        self, c: _Chunk
    ) -> tuple[Accounting[Target], Breaker | None, float | None, dict[str, Breaker]]:
        """The chunk's one transaction: what it accounted, the pair's breaker, the deferral,
        the origins' breakers it changed."""
        job, pub, batch = c.job, c.pub, c.batch
        parked: float | None = None
        breaker: Breaker | None = None
        origin_changes: dict[str, Breaker] = {}
        async with self.db.write() as conn:
            # Read under a shared lock: a cancel that committed first has already turned these
            # recipients into ``cancelled`` (and moved the counters), one that comes later waits.
            status = await self.publishes.status_locked(conn, pub.id)
            cancelled = status == PublishStatus.CANCELLED
            out = account(batch, c.targets, c.results, now=c.now, cancelled=cancelled)
            await self.publishes.record(conn, pub.id, out.updates)
            await self.publishes.bump(conn, pub.id, batch.provider, **out.counts)
            await report_outcomes(self.webhooks, conn, pub, batch.provider, out)
            if out.invalid:
                await DeviceStore.invalidate(conn, out.invalid, c.now)
            if out.retries:
                await JobQueue.enqueue_dispatch(
                    conn,
                    pub.app_id,
                    pub.id,
                    batch.provider,
                    {run_at: [t.row() for t in retry] for run_at, retry in out.retries.items()},
                    attempt=batch.attempt + 1,
                    since=_since(batch, pub),
                )
            if c.held:
                await JobQueue.enqueue_dispatch(
                    conn,
                    pub.app_id,
                    pub.id,
                    batch.provider,
                    {run_at: [t.row() for t in group] for run_at, group in c.held.items()},
                    attempt=batch.attempt,
                    replay=batch.was_retrying and batch.attempt == 1,
                    deferred_by=batch.provider,
                    held=batch.was_held,
                    since=_since(batch, pub),
                )
            if c.classes:
                await self.health_store.add_events(conn, pub.app_id, batch.provider, c.now, c.classes)
                judged = (
                    [r for r in c.answered if r.outcome is not Outcome.CREDENTIAL]
                    if c.stale_credential
                    else c.answered
                )
                if c.origins is not None:
                    scoped = [
                        (c.origins[i], r)
                        for i, r in enumerate(c.results[: len(c.origins)])
                        if isinstance(r, SendResult)
                        and not (c.stale_credential and r.outcome is Outcome.CREDENTIAL)
                    ]
                    judged, per_origin = by_scope([o for o, _ in scoped], [r for _, r in scoped])
                    failed = failed_by_origin(c.targets, c.results, c.origins)
                    origin_changes = await self.quarantine.observe_origins(
                        conn, pub.app_id, batch.provider, per_origin, c.origin_probes, failed
                    )
                breaker = await self.quarantine.observe(
                    conn, pub.app_id, batch.provider, judged, probing=c.probing
                )
                if breaker.state == OPEN and not c.final and breaker.open_until is not None:
                    parked = breaker.open_until
            if c.final:
                still_ours = await JobQueue.delete_claimed(conn, job.id, job.claims)
            elif parked is not None:
                still_ours = await JobQueue.defer(
                    conn, job.id, job.claims, c.progress, parked, deferred_by=batch.provider
                )
            else:
                still_ours = await JobQueue.advance(conn, job.id, job.claims, c.progress, self.lease_seconds)
            if not still_ours and not cancelled:
                # A cancel deletes the publish's jobs and still wants what was sent recorded;
                # otherwise a missing job means another claim owns this batch now.
                raise LeaseLost(job.id)
        return out, breaker, parked, origin_changes

    async def record_group(
        self, app_id: str, provider: str, entries: Sequence[GroupEntry], *, stale_credential: bool
    ) -> list[GroupEntry]:
        """Commit a group's outcomes in one transaction: every job's delivery records, counters,
        invalidations and retries, the pair's (and origins') health and breakers once, the jobs'
        deletion, and the close of every publish this finished (one statement). Returns the
        entries not recorded because another claim took their job over (it sends and records
        them); a cancelled publish's answers are recorded although its job is gone."""
        started = time.perf_counter()
        lost, breaker, origin_changes, answered = await self.storage.commit(
            lambda: self._commit_group(app_id, provider, entries, stale_credential),
            f"recording outcomes of {len(entries)} publishes",
        )
        RECORD_SECONDS.observe(time.perf_counter() - started)
        if breaker is not None:
            self.quarantine.remember(app_id, provider, breaker)
        self.quarantine.remember_origins(app_id, provider, origin_changes)
        for cls, n in answered.items():
            DELIVERIES.labels(provider, cls).inc(n)
        return lost

    async def _commit_group(
        self, app_id: str, provider: str, entries: Sequence[GroupEntry], stale_credential: bool
    ) -> tuple[list[GroupEntry], Breaker | None, dict[str, Breaker], Counter[str]]:
        now = clock.now()
        lost: list[GroupEntry] = []
        updates: dict[str, list[DeliveryUpdate]] = {}
        moves: list[tuple[str, str, dict[str, int]]] = []
        invalid: dict[str, tuple[str, str]] = {}
        async with self.db.write() as conn:
            # Rows locked first, in id order, as every transaction that moves counters does.
            statuses = await self.publishes.statuses_locked(conn, sorted({e.pub.id for e in entries}))
            kept = await JobQueue.delete_claimed_many(conn, [(e.job.id, e.job.claims) for e in entries])
            for e in entries:
                cancelled = statuses.get(e.pub.id) == PublishStatus.CANCELLED
                if e.job.id not in kept and not cancelled:
                    lost.append(e)
                    continue
                out = account(e.batch, e.targets, e.results, now=now, cancelled=cancelled)
                await report_outcomes(self.webhooks, conn, e.pub, provider, out)
                updates.setdefault(e.pub.id, []).extend(out.updates)
                moves.append((e.pub.id, provider, out.counts))
                invalid.update(out.invalid)
                if out.retries:
                    await JobQueue.enqueue_dispatch(
                        conn,
                        app_id,
                        e.pub.id,
                        provider,
                        {run_at: [t.row() for t in retry] for run_at, retry in out.retries.items()},
                        attempt=e.batch.attempt + 1,
                        grouped=True,
                        since=_since(e.batch, e.pub),
                    )
            await self.publishes.record_many(conn, updates)
            await bump_many(conn, self.db.dialect, moves)
            if invalid:
                await DeviceStore.invalidate(conn, invalid, now)
            # Only what this run records: a job taken over is answered and counted by its claim.
            gone = {id(e) for e in lost}
            recorded = [e for e in entries if id(e) not in gone]
            breaker, origin_changes, answered = await self._observe_group(
                conn, app_id, provider, recorded, now, stale_credential
            )
            await self.publishes.close_done_many(conn, list(updates))
        if invalid:
            log.info("marked %d %s device(s) invalid", len(invalid), provider)
        return lost, breaker, origin_changes, answered

    async def _observe_group(
        self,
        conn: AsyncConnection,
        app_id: str,
        provider: str,
        entries: Sequence[GroupEntry],
        now: float,
        stale_credential: bool,
    ) -> tuple[Breaker | None, dict[str, Breaker], Counter[str]]:
        """The group's answers into the pair's health events and breaker (and each origin's,
        for a provider with origins), once for the whole group."""
        targets: list[Target] = []
        results: list[Attempt] = []
        origins: list[str | None] = []
        for e in entries:
            n = len(e.origins) if e.origins is not None else len(e.results)
            targets += e.targets[:n]
            results += e.results[:n]
            origins += e.origins if e.origins is not None else [None] * n
        answered = [r for r in results if isinstance(r, SendResult)]
        classes = Counter(r.outcome.value for r in answered)
        if not classes:
            return None, {}, classes
        await self.health_store.add_events(conn, app_id, provider, now, classes)
        scoped = [
            (o, r)
            for o, r in zip(origins, results, strict=True)
            if isinstance(r, SendResult) and not (stale_credential and r.outcome is Outcome.CREDENTIAL)
        ]
        judged, per_origin = by_scope([o for o, _ in scoped], [r for _, r in scoped])
        origin_changes: dict[str, Breaker] = {}
        if per_origin:
            failed = failed_by_origin(targets, results, origins)
            origin_changes = await self.quarantine.observe_origins(
                conn, app_id, provider, per_origin, frozenset(), failed
            )
        breaker = await self.quarantine.observe(conn, app_id, provider, judged, probing=False)
        return breaker, origin_changes, classes

    async def renew(self, job: Job[DispatchPayload], progress: int) -> None:
        """Extend the job's lease before sending again after a wait for storage; LeaseLost when
        another claim has taken the job over (it sends the rest, this run must not)."""
        async with self.db.write() as conn:
            if not await JobQueue.advance(conn, job.id, job.claims, progress, self.lease_seconds):
                raise LeaseLost(job.id)

    async def defer(
        self, job: Job[DispatchPayload], progress: int, run_at: float, deferred_by: str | None
    ) -> None:
        """Hand the rest of the job back to run at ``run_at`` (nothing of it was attempted)."""

        async def commit() -> None:
            async with self.db.write() as conn:
                if not await JobQueue.defer(conn, job.id, job.claims, progress, run_at, deferred_by):
                    raise LeaseLost(job.id)
                if deferred_by is not None:
                    # Read after the job's row is written: a probe's success that committed
                    # before this read found the job still running and could not wake it, so
                    # wake it here; one that commits later wakes it itself (it waits for this
                    # row). Without this the job slept until the probe timeout.
                    breaker = await self.health_store.breaker_in(conn, job.app_id, deferred_by)
                    if breaker.state == CLOSED:
                        await wake_deferred(conn, job.app_id, deferred_by, clock.now())

        # Held like outcomes: the deferral often follows a chunk whose answers parked the pair.
        await self.storage.commit(commit, f"deferring job {job.id}")


class JobRecorder:
    """Records one dispatch job's outcomes chunk by chunk, tracking the job's progress."""

    def __init__(self, recorder: Recorder, job: Job[DispatchPayload], pub: Publish, batch: Batch) -> None:
        self.recorder = recorder
        self.job = job
        self.pub = pub
        self.batch = batch
        #: Position in the job's full target list after what has been recorded.
        self.progress = job.progress

    @property
    def deadline(self) -> float | None:
        return self.batch.deadline

    async def __call__(
        self,
        targets: Sequence[Target],
        results: Sequence[Attempt],
        *,
        final: bool,
        probing: bool = False,
        observed: bool = True,
        stale_credential: bool = False,
        origins: Sequence[str | None] | None = None,
        origin_probes: frozenset[str] = frozenset(),
        held: Mapping[float, Sequence[Target]] | None = None,
    ) -> float | None:
        self.progress += len(targets) + sum(len(g) for g in (held or {}).values())
        return await self.recorder.record(
            self.job,
            self.pub,
            self.batch,
            targets,
            results,
            final=final,
            progress=self.progress,
            probing=probing,
            observed=observed,
            stale_credential=stale_credential,
            origins=origins,
            origin_probes=origin_probes,
            held=held,
        )

    async def defer(self, run_at: float, deferred_by: str | None) -> None:
        """Hand the rest of the job back to run at ``run_at`` (nothing of it was attempted)."""
        await self.recorder.defer(self.job, self.progress, run_at, deferred_by)

    async def renew(self) -> None:
        """Extend the job's lease at its recorded progress (see :meth:`Recorder.renew`)."""
        await self.recorder.renew(self.job, self.progress)
