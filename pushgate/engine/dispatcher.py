"""Dispatch: send one batch through its provider and record every recipient's outcome.

Outcomes, counters, device invalidation, the retry job, the pair's health and the job's progress
commit in one transaction: a crash before it re-runs the batch (skipping recipients already
final), a crash after it loses nothing. Before and between chunks the batch passes the pair's
quarantine and the rate limits; either may defer the rest of the job (no attempt is spent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pushgate.config import Settings
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.quarantine import OPEN
from pushgate.domain.retry import RetryDecision, RetryPolicy, decide_retry
from pushgate.engine.health import HealthMonitor
from pushgate.engine.limits import RateLimits
from pushgate.engine.providers import ProviderPool
from pushgate.engine.quarantine import Quarantine
from pushgate.engine.rendering import RenderCache
from pushgate.metrics import DEFERRED, DELIVERIES, RECORD_SECONDS, SEND_SECONDS
from pushgate.providers import registry
from pushgate.providers.base import Provider, ProviderConfigError, Target
from pushgate.store.db import Database
from pushgate.store.devices import DeviceStore
from pushgate.store.health import ProviderHealthStore
from pushgate.store.publishes import CLOSED, DeliveryUpdate, Publish, PublishStore
from pushgate.store.queue import Job, JobQueue
from pushgate.store.secretbox import SecretKeyError

log = logging.getLogger("pushgate.engine")


#: Targets per provider call inside one batch; the publish's cancel is checked between calls.
SEND_CHUNK = 100
CANCEL_CHECK_SECONDS = 0.2
#: A rate limit that asks for a longer wait than this defers the job instead of holding a worker.
MAX_INLINE_WAIT = 1.0

#: Stand-ins for targets that got no provider answer (no error class on their record).
_EXPIRED = SendResult(Outcome.PAYLOAD, error_code="expired")
_CANCELLED = SendResult(Outcome.PROVIDER_TRANSIENT, error_code="cancelled")
#: Deferred (quarantine, rate limit) past ``retry.max_age_seconds``: failed, a dead letter.
_TOO_OLD = SendResult(
    Outcome.PROVIDER_TRANSIENT,
    error_code="deferred_too_long",
    error_message="still deferred (provider quarantined or rate limited) after retry.max_age_seconds",
)


def retry_policies(settings: Settings) -> dict[str, RetryPolicy]:
    """``[retry]`` merged with each ``[retry.<provider>]`` override and the providers' floors."""
    r = settings.retry
    out: dict[str, RetryPolicy] = {}
    for spec in registry.specs():
        name = spec.name
        o = r.by_provider.get(name)

        def pick(key: str, o: Any = o) -> Any:
            v = getattr(o, key) if o is not None else None
            return v if v is not None else getattr(r, key)

        out[name] = RetryPolicy(
            ladder=tuple(pick("ladder")),
            jitter=float(pick("jitter")),
            max_attempts=int(pick("max_attempts")),
            max_age=float(pick("max_age_seconds")),
            quota_min_delay=max(spec.quota_floor, float(pick("quota_min_delay"))),
        )
    return out


@dataclass(slots=True)
class Guards:
    """What stands between a batch and its provider: quarantine, health throttle, rate limits."""

    quarantine: Quarantine
    health: HealthMonitor
    limits: RateLimits
    store: ProviderHealthStore


class LostLease(Exception):
    """Another claim took this job over; this run's results must not be recorded."""


class Dispatcher:
    def __init__(
        self,
        db: Database,
        publishes: PublishStore,
        pool: ProviderPool,
        settings: Settings,
        guards: Guards,
    ) -> None:
        self.db = db
        self.publishes = publishes
        self.pool = pool
        self.policies = retry_policies(settings)
        #: The job lease, renewed between chunks of a batch so a slow provider never lets the
        #: job be claimed (and sent) a second time while it is still running.
        self.lease_seconds = settings.engine.lease_seconds
        self.guards = guards
        self.renders = RenderCache()
        self._cancel_checks: dict[str, tuple[float, bool]] = {}

    async def run(self, job: Job, pub: Publish | None, app_name: str) -> None:
        if pub is None or pub.status in CLOSED:
            async with self.db.write() as conn:
                await JobQueue.delete(conn, job.id)
            return
        provider_name: str = job.payload["provider"]
        attempt: int = job.payload["attempt"]
        # Targets before ``progress`` were recorded by an earlier claim of this job.
        targets = [Target(*t) for t in job.payload["targets"][job.progress :]]
        if job.claims > 1:
            done = await self.publishes.final_recipients(pub.id, [t.recipient_id for t in targets])
            targets = [t for t in targets if t.recipient_id not in done]
        deadline = _deadline(pub)
        record = _Recorder(self, job, pub, provider_name, attempt, deadline)
        try:
            if not targets:
                await record([], [], final=True)
            elif deadline is not None and time.time() >= deadline:
                await record(targets, [_EXPIRED for _ in targets], final=True, observed=False)
            else:
                await self._send(record, pub, app_name, provider_name, targets)
        except LostLease:
            log.warning(
                "job %s was re-claimed while sending; its remaining results were not recorded", job.id
            )
            return
        await self.publishes.finish_if_done(pub.id)

    async def _send(
        self, record: _Recorder, pub: Publish, app_name: str, provider_name: str, targets: list[Target]
    ) -> None:
        try:
            provider = await self.pool.get(pub.app_id, app_name, provider_name)
        except (ProviderConfigError, SecretKeyError) as exc:
            failed = SendResult(Outcome.CREDENTIAL, error_code="credential_invalid", error_message=str(exc))
            await record(targets, [failed for _ in targets], final=True, observed=False)
            return
        if provider is None:
            missing = SendResult(
                Outcome.CREDENTIAL,
                error_code="no_credentials",
                error_message=f"app {app_name!r} has no {provider_name} credentials",
            )
            await record(targets, [missing for _ in targets], final=True, observed=False)
            return
        g = self.guards
        gate = await g.quarantine.gate(pub.app_id, provider_name)
        if gate.defer_until is not None:
            if not await self._give_up_instead(record, pub, provider_name, targets, gate.defer_until):
                await record.defer(gate.defer_until, provider_name)
                DEFERRED.labels(provider_name, "quarantine").inc()
            return
        probing = gate.probe
        await g.health.refresh(pub.app_id)
        rendered = self.renders.get(pub.id, provider_name, pub.request, pub.created_at)
        # Sent and recorded chunk by chunk: a crash re-sends at most the chunks in flight, and a
        # cancel stops a big batch within about one chunk's round trip (the rest is recorded
        # cancelled). A probe is a chunk of one.
        k = 0
        size = min(SEND_CHUNK, g.limits.chunk_cap(pub.app_id, app_name, provider_name) or SEND_CHUNK)
        while k < len(targets):
            chunk = targets[k : k + (1 if probing else size)]
            if k and await self._cancelled(pub.id):
                await record(targets[k:], [], final=True)
                return
            wait, layer = g.limits.reserve(pub.app_id, app_name, provider_name, len(chunk))
            if wait > MAX_INLINE_WAIT and not probing:
                g.limits.refund(pub.app_id, provider_name, len(chunk))
                until = time.time() + wait
                if not await self._give_up_instead(record, pub, provider_name, targets[k:], until):
                    await record.defer(until, None)
                    DEFERRED.labels(provider_name, f"rate_{layer}").inc()
                return
            if wait > 0:
                await asyncio.sleep(wait)
            async with g.limits.in_flight.hold(len(chunk)):
                started = time.perf_counter()
                results = await provider.send_batch(rendered, chunk)
                SEND_SECONDS.labels(provider_name).observe(time.perf_counter() - started)
            k += len(chunk)
            stale = await self._rotated_meanwhile(pub.app_id, app_name, provider_name, provider, results)
            parked = await record(
                chunk, results, final=k >= len(targets), probing=probing, stale_credential=stale
            )
            probing = False
            if parked is not None:
                # The rest of the job was deferred with these answers; unless waiting would
                # outlive the notification or the retry age, in which case it ends now.
                if not await self._give_up_instead(record, pub, provider_name, targets[k:], parked):
                    DEFERRED.labels(provider_name, "quarantine").inc()
                return

    async def _rotated_meanwhile(
        self, app_id: str, app_name: str, provider_name: str, used: Provider, results: list[SendResult]
    ) -> bool:
        """Whether credential refusals came from a credential that was replaced while the chunk
        was in flight (a new upload): they say nothing about the new one and must not park the
        pair again. Checked only when there is such a refusal."""
        if not any(r.outcome is Outcome.CREDENTIAL for r in results):
            return False
        try:
            current = await self.pool.get(app_id, app_name, provider_name)
        except (ProviderConfigError, SecretKeyError):
            return False
        return current is not used

    async def _give_up_instead(
        self, record: _Recorder, pub: Publish, provider_name: str, targets: list[Target], until: float
    ) -> bool:
        """Record ``targets`` final instead of deferring them to ``until`` if that is past the
        notification's deadline (``expired``) or ``retry.max_age_seconds`` (``failed``, a dead
        letter, replayable once the provider is back). Without this a provider that never
        recovers would keep its publishes open for ever."""
        stand_in: SendResult | None = None
        if record.deadline is not None and until >= record.deadline:
            stand_in = _EXPIRED
        else:
            max_age = self.policies[provider_name].max_age
            if max_age > 0 and until > pub.created_at + max_age:
                stand_in = _TOO_OLD
        if stand_in is None or not targets:
            return False
        await record(targets, [stand_in for _ in targets], final=True, observed=False)
        return True

    async def _cancelled(self, publish_id: str) -> bool:
        """Whether the publish was cancelled, read at most every ``CANCEL_CHECK_SECONDS``."""
        now = time.monotonic()
        hit = self._cancel_checks.get(publish_id)
        if hit is not None and now - hit[0] < CANCEL_CHECK_SECONDS:
            return hit[1]
        if len(self._cancel_checks) > 1000:
            self._cancel_checks = {k: v for k, v in self._cancel_checks.items() if now - v[0] < 10}
        cancelled = await self.publishes.status(publish_id) == "cancelled"
        self._cancel_checks[publish_id] = (now, cancelled)
        return cancelled

    async def give_up(self, job: Job, pub: Publish) -> None:
        """Fail a batch that cannot be run (its job keeps crashing), so the publish can finish."""
        provider_name: str = job.payload["provider"]
        targets = [Target(*t) for t in job.payload["targets"][job.progress :]]
        done = await self.publishes.final_recipients(pub.id, [t.recipient_id for t in targets])
        targets = [t for t in targets if t.recipient_id not in done]
        failed = SendResult(
            Outcome.PAYLOAD, error_code="internal_error", error_message="dispatch failed repeatedly"
        )
        record = _Recorder(self, job, pub, provider_name, job.payload["attempt"], None)
        await record(targets, [failed for _ in targets], final=True, observed=False)
        await self.publishes.finish_if_done(pub.id)

    async def _record(
        self,
        job: Job,
        pub: Publish,
        provider_name: str,
        attempt: int,
        targets: list[Target],
        results: list[SendResult],
        deadline: float | None,
        *,
        final: bool,
        progress: int,
        probing: bool = False,
        observed: bool = True,
        stale_credential: bool = False,
    ) -> float | None:
        """Commit one chunk's outcomes; returns when the job was deferred to, if the chunk's
        answers quarantined the pair (the rest of the job waits, no attempt spent).

        ``stale_credential``: the chunk went out with a credential replaced meanwhile; its
        credential refusals are recorded but kept out of the breaker."""
        now = time.time()
        # A replayed dead letter runs as attempt 1 but is already counted as retrying.
        was_retrying = attempt > 1 or bool(job.payload.get("replay"))
        # ``observed``: these are real provider answers (not a local failure to build the
        # request), so they count toward the pair's health and quarantine.
        answered = results[: len(targets)] if observed else []
        classes = Counter(r.outcome.value for r in answered if r is not _EXPIRED)
        parked: float | None = None
        breaker = None
        started = time.perf_counter()
        async with self.db.write() as conn:
            # Read under a shared lock: a cancel that committed first has already turned these
            # recipients into ``cancelled`` (and moved the counters), one that comes later waits.
            cancelled = await self.publishes.status_locked(conn, pub.id) == "cancelled"
            updates, counts, invalid, retries = self._outcomes(
                pub, provider_name, attempt, targets, results, deadline, now, was_retrying, cancelled
            )
            await self.publishes.record(conn, pub.id, updates)
            await self.publishes.bump(conn, pub.id, provider_name, **counts)
            if invalid:
                await DeviceStore.invalidate(conn, invalid, now)
            await JobQueue.enqueue_many(
                conn,
                [
                    {
                        "kind": "dispatch",
                        "app_id": pub.app_id,
                        "publish_id": pub.id,
                        "run_at": run_at,
                        "payload": {"provider": provider_name, "attempt": attempt + 1, "targets": batch},
                    }
                    for run_at, batch in retries.items()
                ],
            )
            if classes:
                await self.guards.store.add_events(conn, pub.app_id, provider_name, now, classes)
                judged = (
                    [r for r in answered if r.outcome is not Outcome.CREDENTIAL]
                    if stale_credential
                    else answered
                )
                breaker = await self.guards.quarantine.observe(
                    conn, pub.app_id, provider_name, judged, probing=probing
                )
                if breaker.state == OPEN and not final and breaker.open_until is not None:
                    parked = breaker.open_until
            if final:
                still_ours = await JobQueue.delete_claimed(conn, job.id, job.claims)
            elif parked is not None:
                still_ours = await JobQueue.defer(
                    conn, job.id, job.claims, progress, parked, deferred_by=provider_name
                )
            else:
                still_ours = await JobQueue.advance(conn, job.id, job.claims, progress, self.lease_seconds)
            if not still_ours and not cancelled:
                # A cancel deletes the publish's jobs and still wants what was sent recorded;
                # otherwise a missing job means another claim owns this batch now.
                raise LostLease(job.id)
        RECORD_SECONDS.observe(time.perf_counter() - started)
        if breaker is not None:
            # Only what committed is cached: a rolled-back change must not park the pair here.
            self.guards.quarantine.remember(pub.app_id, provider_name, breaker)
        for cls, n in classes.items():
            DELIVERIES.labels(provider_name, cls).inc(n)
        if invalid:
            log.info("marked %d %s device(s) invalid for publish %s", len(invalid), provider_name, pub.id)
        return parked

    async def _defer(self, job: Job, progress: int, run_at: float, deferred_by: str | None) -> None:
        async with self.db.write() as conn:
            if not await JobQueue.defer(conn, job.id, job.claims, progress, run_at, deferred_by):
                raise LostLease(job.id)

    def _outcomes(
        self,
        pub: Publish,
        provider_name: str,
        attempt: int,
        targets: list[Target],
        results: list[SendResult],
        deadline: float | None,
        now: float,
        was_retrying: bool,
        cancelled: bool,
    ) -> tuple[
        list[DeliveryUpdate], dict[str, int], dict[str, tuple[str, str]], dict[float, list[list[str]]]
    ]:
        """Delivery updates, counter deltas, devices to invalidate and retry batches for one batch.

        ``cancelled``: the publish was cancelled while this batch was in flight, so its
        recipients count as ``cancelled``; what was really sent moves from there to its outcome,
        and what would have been retried stays cancelled.
        """
        policy = self.policies[provider_name]
        updates: list[DeliveryUpdate] = []
        invalid: dict[str, tuple[str, str]] = {}
        retries: dict[float, list[list[str]]] = {}
        counts = {"sent": 0, "failed": 0, "invalid_token": 0, "expired": 0, "retrying": 0, "cancelled": 0}
        for n, target in enumerate(targets):
            # Targets past the results were not sent: their publish was cancelled mid-batch.
            res = results[n] if n < len(results) else _CANCELLED
            answered = res is not _EXPIRED and res is not _CANCELLED and res is not _TOO_OLD
            status: str
            dead = False
            if res.outcome is Outcome.SENT:
                status = "sent"
            elif res is _EXPIRED:
                status = "expired"
            elif res is _TOO_OLD:
                status, dead = "failed", True
            elif res.outcome is Outcome.DEVICE_TERMINAL:
                status = "invalid_token"
                if target.recipient_id.startswith("dev_"):
                    reason = f"{provider_name}: {res.error_code or 'invalid token'}"
                    invalid[target.recipient_id] = (reason, target.token)
            elif res.outcome.retryable and cancelled:
                status = "cancelled"
            elif res.outcome.retryable:
                decision, run_at = decide_retry(
                    policy,
                    attempt,
                    res.outcome,
                    res.retry_after,
                    now=now,
                    created_at=pub.created_at,
                    deadline=deadline,
                )
                if decision == RetryDecision.RETRY:
                    status = "retrying"
                    retries.setdefault(round(run_at, 3), []).append(target.row())
                elif decision == RetryDecision.EXPIRED:
                    status = "expired"
                else:
                    status, dead = "failed", True
            else:
                status = "failed"
                # A provider that refused our credential will take the same push once the
                # credential is fixed: keep it replayable (a dead letter). Missing or unusable
                # configuration (no request was made) is not.
                dead = res.outcome is Outcome.CREDENTIAL and res.error_code not in (
                    "no_credentials",
                    "credential_invalid",
                )
            if cancelled:
                if status != "cancelled":
                    counts["cancelled"] -= 1
                    counts[status] += 1
            elif status == "retrying":
                if not was_retrying:
                    counts["retrying"] += 1
            else:
                counts[status] += 1
                if was_retrying:
                    counts["retrying"] -= 1
            updates.append(
                DeliveryUpdate(
                    recipient_id=target.recipient_id,
                    status=status,
                    attempts=attempt,
                    error_code=None if status == "sent" else res.error_code,
                    error_message=None if status == "sent" else res.error_message,
                    error_class=res.outcome.value if answered else None,
                    provider_message_id=res.provider_message_id,
                    sent_at=now if status == "sent" else None,
                    dead=dead,
                )
            )
        return updates, counts, invalid, retries


def _deadline(pub: Publish) -> float | None:
    """No attempt happens after ``expire_at`` or after the notification's TTL ran out."""
    limits: list[float] = []
    if pub.expire_at is not None:
        limits.append(pub.expire_at)
    ttl = (pub.request.get("notification") or {}).get("ttl_seconds")
    if ttl:
        limits.append(pub.created_at + ttl)
    return min(limits) if limits else None


class _Recorder:
    """Records one dispatch job's outcomes chunk by chunk, tracking the job's progress."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        job: Job,
        pub: Publish,
        provider_name: str,
        attempt: int,
        deadline: float | None,
    ) -> None:
        self.dispatcher = dispatcher
        self.job = job
        self.pub = pub
        self.provider_name = provider_name
        self.attempt = attempt
        self.deadline = deadline
        #: Position in the job's full target list after what has been recorded.
        self.progress = job.progress

    async def __call__(
        self,
        targets: list[Target],
        results: list[SendResult],
        *,
        final: bool,
        probing: bool = False,
        observed: bool = True,
        stale_credential: bool = False,
    ) -> float | None:
        self.progress += len(targets)
        return await self.dispatcher._record(
            self.job,
            self.pub,
            self.provider_name,
            self.attempt,
            targets,
            results,
            self.deadline,
            final=final,
            progress=self.progress,
            probing=probing,
            observed=observed,
            stale_credential=stale_credential,
        )

    async def defer(self, run_at: float, deferred_by: str | None) -> None:
        """Hand the rest of the job back to run at ``run_at`` (nothing of it was attempted)."""
        await self.dispatcher._defer(self.job, self.progress, run_at, deferred_by)
