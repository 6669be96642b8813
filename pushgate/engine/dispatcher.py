"""Dispatch: send one batch through its provider, chunk by chunk, and hand each chunk's answers
to the recorder (``engine/recorder.py``, one transaction per chunk).

Before and between chunks the batch passes the pair's quarantine and the rate limits; either
may defer the rest of the job (no attempt is spent). For Web Push and WNS each chunk also
passes its targets' push-service origins: targets of a quarantined origin are handed back as a
job of their own, and the rest of the chunk is sent. Targets that are not sent at all (the
deadline passed, the publish was cancelled, the wait would outlast ``retry.max_age_seconds``,
the device was deleted since planning)
are recorded as :class:`~pushgate.domain.accounting.NotAttempted`, never as a made-up answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushgate.config import Settings
from pushgate.domain import clock
from pushgate.domain.accounting import (
    CANCELLED,
    DEFERRED_TOO_LONG,
    DEVICE_REMOVED,
    EXPIRED,
    Batch,
    NotAttempted,
)
from pushgate.domain.jobs import DispatchPayload
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.planning import deadline
from pushgate.domain.quarantine import Gate
from pushgate.domain.retry import RetryPolicy
from pushgate.domain.status import CLOSED, PublishStatus
from pushgate.engine.dryrun import dry_run
from pushgate.engine.health import HealthMonitor
from pushgate.engine.limits import RateLimits
from pushgate.engine.providers import ProviderPool
from pushgate.engine.quarantine import Quarantine
from pushgate.engine.recorder import JobRecorder, Recorder
from pushgate.engine.rendering import RenderCache, send_groups
from pushgate.metrics import DEFERRED, SEND_SECONDS
from pushgate.providers import registry
from pushgate.providers.base import Provider, ProviderConfigError, Target
from pushgate.store.db import Database
from pushgate.store.device_vars import device_vars
from pushgate.store.devices import DeviceStore
from pushgate.store.health import ProviderHealthStore
from pushgate.store.publishes import Publish, PublishStore
from pushgate.store.queue import Job, JobQueue, LeaseLost
from pushgate.store.secretbox import SecretKeyError

log = logging.getLogger("pushgate.engine")


#: Targets per provider call inside one batch; the publish's cancel is checked between calls.
SEND_CHUNK = 100
CANCEL_CHECK_SECONDS = 0.2
#: A rate limit that asks for a longer wait than this defers the job instead of holding a worker.
MAX_INLINE_WAIT = 1.0
#: Targets of an origin whose probe is out (sent from this chunk) come back this much later.
PROBE_WAIT = 1.0


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
class OriginSplit:
    """One chunk after its origins' gates: what is sent (with each target's origin), what is
    held for later (by run time), what is given up (the wait would outlast it)."""

    send: list[Target]
    origins: list[str | None]
    held: dict[float, list[Target]] = field(default_factory=dict)
    skipped: list[Target] = field(default_factory=list)
    skips: list[NotAttempted] = field(default_factory=list)
    probes: frozenset[str] = frozenset()


@dataclass(slots=True)
class Guards:
    """What stands between a batch and its provider: quarantine, health throttle, rate limits."""

    quarantine: Quarantine
    health: HealthMonitor
    limits: RateLimits
    store: ProviderHealthStore


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
        self.guards = guards
        self.recorder = Recorder(
            db, publishes, guards.quarantine, guards.store, settings.engine.lease_seconds
        )
        self.renders = RenderCache(read_vars=lambda ids: device_vars(db, ids))
        self.devices = DeviceStore(db)
        self._cancel_checks: dict[str, tuple[float, bool]] = {}

    def _job_recorder(self, job: Job[DispatchPayload], pub: Publish, deadline: float | None) -> JobRecorder:
        p = job.payload
        batch = Batch(
            provider=p.provider,
            attempt=p.attempt,
            policy=self.policies[p.provider],
            created_at=p.due_since(pub.created_at, pub.send_at),
            deadline=deadline,
            was_retrying=p.was_retrying,
            was_held=p.held,
        )
        return self.recorder.for_job(job, pub, batch)

    async def _open_targets(self, job: Job[DispatchPayload], pub: Publish, *, rerun: bool) -> list[Target]:
        """The job's targets still to send: those before ``progress`` were recorded by an
        earlier claim, and on a re-run (``rerun``) recipients already final are skipped."""
        targets = [Target(*t) for t in job.payload.targets[job.progress :]]
        if rerun:
            done = await self.publishes.final_recipients(pub.id, [t.recipient_id for t in targets])
            targets = [t for t in targets if t.recipient_id not in done]
        return targets

    async def run(self, job: Job[DispatchPayload], pub: Publish | None, app_name: str) -> None:
        if pub is None or pub.status in CLOSED:
            async with self.db.write() as conn:
                await JobQueue.delete(conn, job.id)
            return
        targets = await self._open_targets(job, pub, rerun=job.claims > 1)
        record = self._job_recorder(job, pub, deadline_of(pub))
        try:
            if not targets:
                await record([], [], final=True)
            elif record.deadline is not None and clock.now() >= record.deadline:
                await record(targets, [EXPIRED for _ in targets], final=True, observed=False)
            elif pub.dry_run:  # recorded, never sent (engine/dryrun.py)
                await dry_run(self.db, self.renders, record, pub, job.payload, targets)
            else:
                await self._send(record, pub, app_name, job.payload.provider, targets)
        except LeaseLost:
            log.warning(
                "job %s was re-claimed while sending; its remaining results were not recorded", job.id
            )
            return
        await self.publishes.finish_if_done(pub.id)

    async def _send(
        self, record: JobRecorder, pub: Publish, app_name: str, provider_name: str, targets: list[Target]
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
        origin_of = registry.get(provider_name).origin_of
        await g.health.refresh(pub.app_id)
        # Sent and recorded chunk by chunk: a crash re-sends at most the chunks in flight, and a
        # cancel stops a big batch within about one chunk's round trip (the rest is recorded
        # cancelled). A probe is a chunk of one.
        k = 0
        size = min(SEND_CHUNK, g.limits.chunk_cap(pub.app_id, app_name, provider_name) or SEND_CHUNK)
        while k < len(targets):
            chunk = targets[k : k + (1 if probing else size)]
            if k and await self._cancelled(pub.id):
                await record(targets[k:], [CANCELLED for _ in targets[k:]], final=True)
                return
            split = await self._split_by_origin(record, pub, provider_name, chunk, origin_of)
            wait, layer = g.limits.reserve(pub.app_id, app_name, provider_name, len(split.send))
            if wait > MAX_INLINE_WAIT and not probing:
                g.limits.refund(pub.app_id, provider_name, len(split.send))
                until = clock.now() + wait
                if not await self._give_up_instead(record, pub, provider_name, targets[k:], until):
                    await record.defer(until, None)
                    DEFERRED.labels(provider_name, f"rate_{layer}").inc()
                return
            if wait > 0:
                await asyncio.sleep(wait)
            # Nothing is sent while the database cannot record it (engine/storage.py); after such
            # a wait the job's lease is renewed first (LeaseLost if another claim took it).
            if await self.recorder.storage.wait_writable():
                await record.renew()
            removed = await self._drop_removed(split)
            if removed:
                g.limits.refund(pub.app_id, provider_name, len(removed))
            results: list[SendResult] = []
            if split.send:
                # One rendering per publish and provider, or per distinct content of a
                # templated/localized publish (engine/rendering.py).
                groups = await self.renders.render_targets(
                    pub.id, provider_name, pub.request, pub.created_at, split.send
                )
                async with g.limits.in_flight.hold(len(split.send)):
                    started = time.perf_counter()
                    # The last net: a provider whose send_batch raises fails this chunk's targets
                    # (invalid_response, retried) instead of crashing the batch into re-claims. The
                    # built-in providers isolate each target (providers/answers.py) before this.
                    results = await send_groups(provider, provider_name, groups, split.send)
                    SEND_SECONDS.labels(provider_name).observe(time.perf_counter() - started)
            k += len(chunk)
            stale = await self.rotated_meanwhile(pub.app_id, app_name, provider_name, provider, results)
            parked = await record(
                split.send + split.skipped + removed,
                [*results, *split.skips, *(DEVICE_REMOVED for _ in removed)],
                final=k >= len(targets),
                probing=probing,
                stale_credential=stale,
                origins=split.origins if origin_of is not None else None,
                origin_probes=split.probes,
                held=split.held,
            )
            probing = probing and not split.send  # a probe whose device was removed is still owed
            if parked is not None:
                # The rest of the job was deferred with these answers; unless waiting would
                # outlive the notification or the retry age, in which case it ends now.
                if not await self._give_up_instead(record, pub, provider_name, targets[k:], parked):
                    DEFERRED.labels(provider_name, "quarantine").inc()
                return

    async def _drop_removed(self, split: OriginSplit) -> list[Target]:
        """Take the devices deleted since planning out of what is about to be sent (checked
        last, after any wait) and return them; their origins go with them."""
        live = await self._still_there(split.send)
        if len(live) == len(split.send):
            return []
        kept = {id(t) for t in live}
        if split.origins:
            split.origins = [o for t, o in zip(split.send, split.origins, strict=True) if id(t) in kept]
        removed = [t for t in split.send if id(t) not in kept]
        split.send = live
        return removed

    async def _still_there(self, chunk: list[Target]) -> list[Target]:
        """The chunk without the devices deleted or invalidated since the job was planned (the
        job carries copies of its targets): one read per chunk, raw tokens and native
        audiences pass as they are."""
        ids = [t.recipient_id for t in chunk if t.recipient_id.startswith("dev_")]
        if not ids:
            return chunk
        active = await self.devices.still_active(ids)
        return [t for t in chunk if t.recipient_id in active or not t.recipient_id.startswith("dev_")]

    async def _split_by_origin(
        self,
        record: JobRecorder,
        pub: Publish,
        provider_name: str,
        chunk: list[Target],
        origin_of: Callable[[str], str | None] | None,
    ) -> OriginSplit:
        """Pass a chunk through its origins' breakers (a provider without origins sends all).

        A quarantined origin's targets are held until its cooldown ends; a due one sends one
        probe from this chunk and holds the rest of its targets for ``PROBE_WAIT``. Only its own
        targets wait: the others go now.
        """
        if origin_of is None:
            return OriginSplit(chunk, [])
        origins = [origin_of(t.token) for t in chunk]
        members: dict[str, set[str]] = {}
        for t, o in zip(chunk, origins, strict=True):
            if o is not None:
                members.setdefault(o, set()).add(t.recipient_id)
        gates = await self.guards.quarantine.origin_gates(pub.app_id, provider_name, members)
        if not gates:
            return OriginSplit(chunk, origins)
        now = clock.now()
        split = OriginSplit([], [])
        probe_of = self._probe_targets(pub.app_id, provider_name, chunk, origins, gates)
        for target, origin in zip(chunk, origins, strict=True):
            g = gates.get(origin) if origin is not None else None
            if g is None or (origin is not None and probe_of.get(origin) is target):
                split.send.append(target)
                split.origins.append(origin)
                continue
            until = g.defer_until if g.defer_until is not None else now + PROBE_WAIT
            skip = self._skip_for(record, pub, provider_name, until)
            if skip is not None:
                split.skipped.append(target)
                split.skips.append(skip)
            else:
                split.held.setdefault(round(until, 3), []).append(target)
        split.probes = frozenset(probe_of)
        if split.held:
            DEFERRED.labels(provider_name, "origin_quarantine").inc()
        return split

    def _probe_targets(
        self,
        app_id: str,
        provider_name: str,
        chunk: list[Target],
        origins: list[str | None],
        gates: dict[str, Gate],
    ) -> dict[str, Target]:
        """The one target that probes each origin this chunk won the probe of: not the one whose
        answer opened the breaker when the chunk has another (a hostile subscription retried as
        the probe would re-open its origin for twice as long each time)."""
        out: dict[str, Target] = {}
        for origin, g in gates.items():
            if not g.probe:
                continue
            mine = [t for t, o in zip(chunk, origins, strict=True) if o == origin]
            failed = self.guards.quarantine.failed_recipient(app_id, provider_name, origin)
            others = [t for t in mine if t.recipient_id != failed]
            out[origin] = (others or mine)[0]
        return out

    async def rotated_meanwhile(
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
        self, record: JobRecorder, pub: Publish, provider_name: str, targets: list[Target], until: float
    ) -> bool:
        """Record ``targets`` final instead of deferring them to ``until`` if that is past the
        notification's deadline (``expired``) or ``retry.max_age_seconds`` (``failed``, a dead
        letter, replayable once the provider is back). Without this a provider that never
        recovers would keep its publishes open for ever."""
        skip = self._skip_for(record, pub, provider_name, until)
        if skip is None or not targets:
            return False
        await record(targets, [skip for _ in targets], final=True, observed=False)
        return True

    def _skip_for(
        self, record: JobRecorder, pub: Publish, provider_name: str, until: float
    ) -> NotAttempted | None:
        """Why a target that would wait until ``until`` is given up instead, if it is."""
        if record.deadline is not None and until >= record.deadline:
            return EXPIRED
        max_age = self.policies[provider_name].max_age
        if max_age > 0 and until > pub.created_at + max_age:
            return DEFERRED_TOO_LONG
        return None

    async def _cancelled(self, publish_id: str) -> bool:
        """Whether the publish was cancelled, read at most every ``CANCEL_CHECK_SECONDS``."""
        now = time.monotonic()
        hit = self._cancel_checks.get(publish_id)
        if hit is not None and now - hit[0] < CANCEL_CHECK_SECONDS:
            return hit[1]
        if len(self._cancel_checks) > 1000:
            self._cancel_checks = {k: v for k, v in self._cancel_checks.items() if now - v[0] < 10}
        cancelled = await self.publishes.status(publish_id) == PublishStatus.CANCELLED
        self._cancel_checks[publish_id] = (now, cancelled)
        return cancelled

    async def give_up(self, job: Job[DispatchPayload], pub: Publish) -> None:
        """Fail a batch that cannot be run (its job keeps crashing), so the publish can finish."""
        targets = await self._open_targets(job, pub, rerun=True)
        failed = SendResult(
            Outcome.PAYLOAD, error_code="internal_error", error_message="dispatch failed repeatedly"
        )
        record = self._job_recorder(job, pub, None)
        await record(targets, [failed for _ in targets], final=True, observed=False)
        await self.publishes.finish_if_done(pub.id)


def deadline_of(pub: Publish) -> float | None:
    """No attempt happens after ``expire_at`` or after the notification's TTL ran out."""
    return deadline(pub.request, pub.created_at, pub.send_at, pub.expire_at)
