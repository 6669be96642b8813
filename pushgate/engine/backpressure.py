"""Backpressure at admission, per app: refuse an app's new publishes while *its* queue is too
deep or too late.

Each app is measured against ``limits.max_queue_depth`` and ``limits.max_queue_age_seconds`` on
its own jobs, so one tenant's backlog turns that tenant's publishes into 429s and nobody
else's. An app is measured at most once per ``CACHE_SECONDS`` (a count that stops at the limit
and one indexed ``min``), however many requests arrive; concurrent callers share a measurement.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from pushgate.config import LimitSettings
from pushgate.store.queue import JobQueue

CACHE_SECONDS = 1.0


@dataclass(slots=True, frozen=True)
class Pressure:
    #: Human-readable: which threshold is exceeded, with the measured value.
    reason: str
    #: Seconds a client should wait before publishing again.
    retry_after: int


class Backpressure:
    def __init__(self, queue: JobQueue, limits: LimitSettings) -> None:
        self.queue = queue
        self.max_depth = limits.max_queue_depth
        self.max_age = limits.max_queue_age_seconds
        #: app id → (monotonic time measured, verdict); the key None is "any app" (/readyz).
        self._cache: dict[str | None, tuple[float, Pressure | None]] = {}
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_depth > 0 or self.max_age > 0

    async def check(self, app_id: str | None = None) -> Pressure | None:
        """None when ``app_id`` may publish, else why not (cached for ``CACHE_SECONDS``).

        Without an app: whether any app is refused (``/readyz`` reports it as ``degraded``,
        without naming the app: the route is not authenticated)."""
        if not self.enabled:
            return None
        cached = self._cache.get(app_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        async with self._lock:
            cached = self._cache.get(app_id)
            if cached is None or time.monotonic() - cached[0] >= CACHE_SECONDS:
                verdict = await (self._measure(app_id) if app_id is not None else self._any_app())
                cached = (time.monotonic(), verdict)
                self._cache[app_id] = cached
        return cached[1]

    async def _measure(self, app_id: str) -> Pressure | None:
        # Counting one past the limit is enough to know it is over.
        depth, oldest = await self.queue.pressure(app_id, self.max_depth + 1 if self.max_depth else 0)
        return self.evaluate(depth, oldest, time.time())

    async def _any_app(self) -> Pressure | None:
        for app_id in await self.queue.apps_with_jobs():
            pressure = await self._measure(app_id)
            if pressure is not None:
                return Pressure(f"an app's publishes are refused: {pressure.reason}", pressure.retry_after)
        return None

    def evaluate(self, depth: int, oldest_run_at: float | None, now: float) -> Pressure | None:
        """The verdict for one app's measurement: ``depth`` jobs queued, the oldest runnable one
        due since ``oldest_run_at``."""
        age = now - oldest_run_at if oldest_run_at is not None else 0.0
        if self.max_depth > 0 and depth > self.max_depth:
            return Pressure(
                f"this app has more than limits.max_queue_depth ({self.max_depth}) jobs queued",
                _retry_after(age),
            )
        if self.max_age > 0 and age > self.max_age:
            return Pressure(
                f"this app's oldest runnable job waited {age:.0f} s, "
                f"over limits.max_queue_age_seconds ({self.max_age:g})",
                _retry_after(age),
            )
        return None


def _retry_after(age: float) -> int:
    """A hint between 1 and 60 s: about a tenth of how late the app's queue runs."""
    return max(1, min(60, math.ceil(age / 10)))
