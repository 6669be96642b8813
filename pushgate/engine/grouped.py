"""Group dispatch: the small dispatch jobs of many publishes, for one app and provider, sent as
one batch and recorded in one transaction.

A publish to one user is one dispatch job of one target. Run alone, each paid for its own claim,
its own reads (publish, "is the device still active"), its own pass through the guards, its own
outcome transaction (health events, breaker, counters) and its own close: ~4 ms of CPU to send
one request. Here one claim takes up to ``engine.dispatch_group`` such jobs
(:meth:`~pushgate.store.queue.JobQueue.claim_group`), and everything but the render and the
request itself is done once for all of them.

The group takes only the common case and hands everything else back to the one-job path
(``engine/dispatcher.py``), which already knows how to do it right: a job claimed before (a
crash or a deferral), a closed or expired publish, a pair in quarantine or probing, an origin
with a breaker, a rate limit that asks to wait longer than a batch would, credentials that
fail to load, storage that was unwritable (its leases renewed first). What is handed back is
still claimed by this worker, its lease renewed, and runs next, job after job, alone.
The guarantees are the one-job path's: every job's delete is guarded by its claim number (a
job taken over by another claim records nothing here), a cancel that committed first turns
what was sent into ``cancelled``, and a crash re-sends at most the group in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushgate.domain import clock
from pushgate.domain.accounting import DEVICE_REMOVED, Attempt, Batch
from pushgate.domain.jobs import DispatchPayload
from pushgate.domain.outcomes import SendResult
from pushgate.domain.status import CLOSED
from pushgate.engine.dispatcher import MAX_INLINE_WAIT, SEND_CHUNK, Dispatcher, deadline_of
from pushgate.engine.recorder import GroupEntry
from pushgate.engine.rendering import send_groups
from pushgate.metrics import GROUP_JOBS, SEND_SECONDS
from pushgate.providers import registry
from pushgate.providers.base import Provider, ProviderConfigError, Target
from pushgate.store.publishes import Publish
from pushgate.store.queue import Job, LeaseLost
from pushgate.store.secretbox import SecretKeyError

log = logging.getLogger("pushgate.engine")


@dataclass(slots=True)
class _Member:
    job: Job[DispatchPayload]
    pub: Publish
    deadline: float | None
    targets: list[Target]
    send: list[Target] = field(default_factory=list)
    removed: list[Target] = field(default_factory=list)
    results: list[SendResult] = field(default_factory=list)


class GroupDispatch:
    """Sends a claimed group (see the module docstring) through the dispatcher's parts."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher

    async def run(self, jobs: list[Job[DispatchPayload]], app_name: str) -> list[Job[DispatchPayload]]:
        """Send and record what the group can; returns the jobs for the one-job path."""
        if not jobs:
            return []
        provider_name, app_id = jobs[0].payload.provider, jobs[0].app_id
        pubs = await self.d.publishes.get_many(sorted({j.publish_id for j in jobs}))
        members, alone = self._members(jobs, pubs, provider_name, app_id)
        if not members:
            return alone
        provider = await self._provider(app_id, app_name, provider_name)
        if provider is None:
            return alone + [m.job for m in members]
        # Parts of at most one chunk (or what the rate limit's bucket holds): the pair's breaker
        # is read again before each, so a refused credential stops the group after one chunk,
        # as it stops a batch, and a rate limit sends what it allows as a group.
        size = min(SEND_CHUNK, self.d.guards.limits.chunk_cap(app_id, app_name, provider_name) or SEND_CHUNK)
        parts: list[list[_Member]] = [[]]
        for m in members:
            if parts[-1] and sum(len(x.targets) for x in parts[-1]) + len(m.targets) > size:
                parts.append([])
            parts[-1].append(m)
        for n, part in enumerate(parts):
            rest = [m for later in parts[n:] for m in later]
            if await self.d.recorder.storage.wait_writable():
                # Leases may have lapsed meanwhile: only the jobs still ours are handed back.
                return alone + await self._still_ours(rest)
            if not await self._run_part(provider, app_id, app_name, provider_name, part):
                return alone + [m.job for m in rest]
        return alone

    async def _still_ours(self, members: list[_Member]) -> list[Job[DispatchPayload]]:
        """Renew the members' leases after a wait; those another claim took over are dropped
        (that claim sends them)."""
        ours: list[Job[DispatchPayload]] = []
        for m in members:
            try:
                await self.d.recorder.renew(m.job, m.job.progress)
            except LeaseLost:
                log.warning("job %s was re-claimed while its group waited for storage", m.job.id)
                continue
            ours.append(m.job)
        return ours

    async def _run_part(
        self, provider: Provider, app_id: str, app_name: str, provider_name: str, members: list[_Member]
    ) -> bool:
        """Send and record one part; False when it may not go now as it is (nothing sent)."""
        if not await self._clear(app_id, provider_name, members):
            return False
        await self._drop_removed(members)
        total = sum(len(m.send) for m in members)
        limits = self.d.guards.limits
        wait, _layer = limits.reserve(app_id, app_name, provider_name, total)
        if wait > MAX_INLINE_WAIT:
            # The one-job path defers, job by job; nothing was sent yet.
            limits.refund(app_id, provider_name, total)
            for m in members:
                m.send.clear()
                m.removed.clear()
            return False
        if wait > 0:
            await asyncio.sleep(wait)  # as a batch waits out a short one (the leases are renewed)
        await self.d.guards.health.refresh(app_id)
        await self._send(provider, provider_name, members, total)
        results: list[SendResult] = [r for m in members for r in m.results]
        stale = await self.d.rotated_meanwhile(app_id, app_name, provider_name, provider, results)
        origin_of = registry.get(provider_name).origin_of
        entries = [self._entry(m, provider_name, origin_of) for m in members]
        GROUP_JOBS.labels(provider_name).observe(len(entries))
        lost = await self.d.recorder.record_group(app_id, provider_name, entries, stale_credential=stale)
        if lost:
            # Their jobs belong to the claim that took them over, which sends and records them.
            log.warning(
                "%d job(s) of a group were re-claimed while sending; their results were not recorded",
                len(lost),
            )
        return True

    def _members(
        self, jobs: list[Job[DispatchPayload]], pubs: dict[str, Publish], provider_name: str, app_id: str
    ) -> tuple[list[_Member], list[Job[DispatchPayload]]]:
        """Split the group into what it sends and what runs alone (module docstring)."""
        now = clock.now()
        members: list[_Member] = []
        alone: list[Job[DispatchPayload]] = []
        for j in jobs:
            pub = pubs.get(j.publish_id)
            deadline = deadline_of(pub) if pub is not None else None
            if (
                pub is None
                or pub.status in CLOSED
                or j.claims != 1
                or j.progress
                or j.app_id != app_id
                or j.payload.provider != provider_name
                or (deadline is not None and now >= deadline)
            ):
                alone.append(j)
                continue
            members.append(_Member(j, pub, deadline, [Target(*t) for t in j.payload.targets]))
        return members, alone

    async def _provider(self, app_id: str, app_name: str, provider_name: str) -> Provider | None:
        """The pair's provider, or None when it cannot be had (the one-job path records why)."""
        try:
            return await self.d.pool.get(app_id, app_name, provider_name)
        except (ProviderConfigError, SecretKeyError):
            return None

    async def _clear(self, app_id: str, provider_name: str, members: list[_Member]) -> bool:
        """Whether the part may go now as it is: the pair's and its origins' breakers closed."""
        g = self.d.guards
        origin_of = registry.get(provider_name).origin_of
        origins: set[str] = set()
        if origin_of is not None:
            origins = {o for m in members for t in m.targets if (o := origin_of(t.token)) is not None}
        return await g.quarantine.open_to_all(app_id, provider_name, origins)

    async def _drop_removed(self, members: list[_Member]) -> None:
        """One read for the whole group: devices deleted or invalidated since planning are not
        sent (recorded ``device_removed``), raw tokens and native audiences go as they are."""
        ids = [t.recipient_id for m in members for t in m.targets if t.recipient_id.startswith("dev_")]
        active = await self.d.devices.still_active(ids) if ids else set()
        for m in members:
            for t in m.targets:
                gone = t.recipient_id.startswith("dev_") and t.recipient_id not in active
                (m.removed if gone else m.send).append(t)

    async def _send(self, provider: Provider, provider_name: str, members: list[_Member], total: int) -> None:
        """Every member's request(s) at once; each member's answers land on it."""
        renders = self.d.renders
        work: list[Any] = []
        busy = [m for m in members if m.send]
        for m in busy:
            # One rendering per publish, or per distinct content of a templated one.
            groups = await renders.render_targets(
                m.pub.id, provider_name, m.pub.request, m.pub.created_at, m.send
            )
            work.append(send_groups(provider, provider_name, groups, m.send))
        async with self.d.guards.limits.in_flight.hold(total):
            started = time.perf_counter()
            for m, results in zip(busy, await asyncio.gather(*work), strict=True):
                m.results = results
            SEND_SECONDS.labels(provider_name).observe(time.perf_counter() - started)

    def _entry(
        self, m: _Member, provider_name: str, origin_of: Callable[[str], str | None] | None
    ) -> GroupEntry:
        p = m.job.payload
        batch = Batch(
            provider=provider_name,
            attempt=p.attempt,
            policy=self.d.policies[provider_name],
            created_at=p.due_since(m.pub.created_at, m.pub.send_at),
            deadline=m.deadline,
            was_retrying=p.was_retrying,
            was_held=p.held,
        )
        results: list[Attempt] = [*m.results, *(DEVICE_REMOVED for _ in m.removed)]
        origins = [origin_of(t.token) for t in m.send] if origin_of is not None else None
        return GroupEntry(m.job, m.pub, batch, [*m.send, *m.removed], results, origins)
