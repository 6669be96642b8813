"""Dispatch: send one batch through its provider and record every recipient's outcome.

Outcomes, counters, device invalidation, the retry job and the removal of this job commit in
one transaction: a crash before it re-runs the batch (skipping recipients already final), a
crash after it loses nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.retry import retry_delay
from pushgate.engine.providers import ProviderPool
from pushgate.engine.rendering import RenderCache
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.store.db import Database
from pushgate.store.devices import DeviceStore
from pushgate.store.publishes import CLOSED, DeliveryUpdate, Publish, PublishStore
from pushgate.store.queue import Job, JobQueue
from pushgate.store.secretbox import SecretKeyError

log = logging.getLogger("pushgate.engine")


#: Targets per provider call inside one batch; the publish's cancel is checked between calls.
SEND_CHUNK = 100
CANCEL_CHECK_SECONDS = 0.2


@dataclass(slots=True)
class RetryPolicy:
    max_attempts: int
    base: float
    cap: float
    fcm_quota_min_delay: float
    #: The job lease, renewed between chunks of a batch so a slow provider never lets the job
    #: be claimed (and sent) a second time while it is still running.
    lease_seconds: float = 60.0


class LostLease(Exception):
    """Another claim took this job over; this run's results must not be recorded."""


class Dispatcher:
    def __init__(
        self, db: Database, publishes: PublishStore, pool: ProviderPool, policy: RetryPolicy
    ) -> None:
        self.db = db
        self.publishes = publishes
        self.pool = pool
        self.policy = policy
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
                await record(
                    targets, [SendResult(Outcome.PAYLOAD, error_code="expired") for _ in targets], final=True
                )
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
            await record(targets, [failed for _ in targets], final=True)
            return
        if provider is None:
            missing = SendResult(
                Outcome.CREDENTIAL,
                error_code="no_credentials",
                error_message=f"app {app_name!r} has no {provider_name} credentials",
            )
            await record(targets, [missing for _ in targets], final=True)
            return
        rendered = self.renders.get(pub.id, provider_name, pub.request, pub.created_at)
        # Sent and recorded chunk by chunk: a crash re-sends at most the chunks in flight, and a
        # cancel stops a big batch within about one chunk's round trip (the rest is recorded
        # cancelled).
        for k in range(0, len(targets), SEND_CHUNK):
            chunk = targets[k : k + SEND_CHUNK]
            if k and await self._cancelled(pub.id):
                await record(targets[k:], [], final=True)
                return
            results = await provider.send_batch(rendered, chunk)
            await record(chunk, results, final=k + SEND_CHUNK >= len(targets))

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
        await record(targets, [failed for _ in targets], final=True)
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
    ) -> None:
        now = time.time()
        # A replayed dead letter runs as attempt 1 but is already counted as retrying.
        was_retrying = attempt > 1 or bool(job.payload.get("replay"))
        async with self.db.write() as conn:
            # Read under a shared lock: a cancel that committed first has already turned these
            # recipients into ``cancelled`` (and moved the counters), one that comes later waits.
            cancelled = await self.publishes.status_locked(conn, pub.id) == "cancelled"
            updates, counts, invalid, retries = self._outcomes(
                provider_name, attempt, targets, results, deadline, now, was_retrying, cancelled
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
            if final:
                still_ours = await JobQueue.delete_claimed(conn, job.id, job.claims)
            else:
                still_ours = await JobQueue.advance(
                    conn, job.id, job.claims, progress, self.policy.lease_seconds
                )
            if not still_ours and not cancelled:
                # A cancel deletes the publish's jobs and still wants what was sent recorded;
                # otherwise a missing job means another claim owns this batch now.
                raise LostLease(job.id)
        if invalid:
            log.info("marked %d %s device(s) invalid for publish %s", len(invalid), provider_name, pub.id)

    def _outcomes(
        self,
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
        updates: list[DeliveryUpdate] = []
        invalid: dict[str, tuple[str, str]] = {}
        retries: dict[float, list[list[str]]] = {}
        counts = {"sent": 0, "failed": 0, "invalid_token": 0, "expired": 0, "retrying": 0, "cancelled": 0}
        unsent = SendResult(Outcome.RETRYABLE, error_code="cancelled")
        for n, target in enumerate(targets):
            # Targets past the results were not sent: their publish was cancelled mid-batch.
            res = results[n] if n < len(results) else unsent
            status: str
            dead = False
            if res.outcome is Outcome.SENT:
                status = "sent"
            elif res.error_code == "expired":
                status = "expired"
            elif res.outcome is Outcome.DEVICE_TERMINAL:
                status = "invalid_token"
                if target.recipient_id.startswith("dev_"):
                    reason = f"{provider_name}: {res.error_code or 'invalid token'}"
                    invalid[target.recipient_id] = (reason, target.token)
            elif res.outcome is Outcome.RETRYABLE and cancelled:
                status = "cancelled"
            elif res.outcome is Outcome.RETRYABLE and attempt < self.policy.max_attempts:
                delay = retry_delay(
                    attempt, base=self.policy.base, cap=self.policy.cap, retry_after=res.retry_after
                )
                if provider_name == "fcm" and res.error_code in ("QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED"):
                    delay = max(delay, self.policy.fcm_quota_min_delay)
                if deadline is not None and now + delay >= deadline:
                    status = "expired"
                else:
                    status = "retrying"
                    retries.setdefault(round(now + delay, 3), []).append(target.row())
            else:
                status = "failed"
                dead = res.outcome is Outcome.RETRYABLE
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

    async def __call__(self, targets: list[Target], results: list[SendResult], *, final: bool) -> None:
        self.progress += len(targets)
        await self.dispatcher._record(
            self.job,
            self.pub,
            self.provider_name,
            self.attempt,
            targets,
            results,
            self.deadline,
            final=final,
            progress=self.progress,
        )
