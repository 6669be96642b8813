"""The jobs a worker process is running: the lease heartbeat that renews their leases, and
which apps they belong to (the idle-apps worker leaves those apps out of its claims).

A lease is what brings a dead worker's jobs back, so it should be short (crash recovery waits
for it to lapse); a job may run longer than that (a slow provider, rate-limit waits, a large
planning page). So the lease is short (``engine.lease_seconds``, 15 s by default) and a single
task per process extends every held lease in one statement every third of it: while the
process lives its jobs stay its own; when it dies they come back within one lease.

A renewal that no longer finds a job held by this process means its lease lapsed and another
claim took it (the event loop stalled for a whole lease, say): that run's results are refused
at its next guarded write (:class:`~pushgate.store.queue.LeaseLost`), as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pushgate.store.queue import Job, JobQueue

log = logging.getLogger("pushgate.engine")


class Heartbeat:
    def __init__(self, queue: JobQueue, owner: str, lease_seconds: float) -> None:
        self.queue = queue
        self.owner = owner
        self.lease_seconds = lease_seconds
        #: Seconds between renewals: two may fail (a busy database) before a lease lapses.
        self.interval = lease_seconds / 3
        #: Job id → how many runs of this process hold it now (the planner's inline batch is
        #: held while its plan job is).
        self._held: dict[int, int] = {}
        #: Held jobs found gone or taken over: not renewed again, reported once.
        self._lost: set[int] = set()
        #: App id → jobs of that app running in this process.
        self._apps: Counter[str] = Counter()

    @contextmanager
    def hold(self, job: Job[Any]) -> Iterator[None]:
        """Keep ``job``'s lease renewed while the block runs."""
        self._held[job.id] = self._held.get(job.id, 0) + 1
        self._apps[job.app_id] += 1
        try:
            yield
        finally:
            self._apps[job.app_id] -= 1
            if not self._apps[job.app_id]:
                del self._apps[job.app_id]
            left = self._held.pop(job.id) - 1
            if left:
                self._held[job.id] = left
            else:
                self._lost.discard(job.id)

    @property
    def held(self) -> set[int]:
        return set(self._held) - self._lost

    @property
    def running_apps(self) -> set[str]:
        """The apps with a job running in this process now."""
        return set(self._apps)

    async def beat(self) -> None:
        """Renew every held lease once; warn about those another claim has taken over."""
        held = self.held
        if not held:
            return
        missing = held - await self.queue.renew(self.owner, held, self.lease_seconds)
        if not missing:
            return
        # Most are done (a plan job is deleted by its last page while its inline batch still
        # runs); the others were taken over by another claim.
        taken = await self.queue.taken_over(self.owner, missing) & self.held
        self._lost |= missing
        for job_id in sorted(taken):
            log.warning(
                "job %s: its lease lapsed and another claim took it over; this run's results "
                "will be refused at its next commit",
                job_id,
            )

    async def run(self, stopped: asyncio.Event) -> None:
        """Renew every ``interval`` seconds until ``stopped`` is set."""
        while not stopped.is_set():
            try:
                await asyncio.wait_for(stopped.wait(), self.interval)
                return
            except TimeoutError:
                pass
            try:
                await self.beat()
            except Exception:
                log.exception("renewing job leases failed; retrying in %.1f s", self.interval)
