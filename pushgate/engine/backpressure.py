"""Backpressure at admission: refuse new publishes while the queue is too deep or too late.

The queue is measured at most once per ``CACHE_SECONDS`` (one count of the jobs table and one
indexed ``min``), however many requests arrive; concurrent callers share one measurement.
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
        self._checked_at = -math.inf
        self._state: Pressure | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_depth > 0 or self.max_age > 0

    async def check(self) -> Pressure | None:
        """None when admission may go on, else why not (cached for ``CACHE_SECONDS``)."""
        if not self.enabled:
            return None
        if time.monotonic() - self._checked_at < CACHE_SECONDS:
            return self._state
        async with self._lock:
            if time.monotonic() - self._checked_at >= CACHE_SECONDS:
                depth, oldest = await self.queue.pressure()
                self._state = self.evaluate(depth, oldest, time.time())
                self._checked_at = time.monotonic()
        return self._state

    def evaluate(self, depth: int, oldest_run_at: float | None, now: float) -> Pressure | None:
        age = now - oldest_run_at if oldest_run_at is not None else 0.0
        if self.max_depth > 0 and depth > self.max_depth:
            return Pressure(
                f"queue depth {depth} is over limits.max_queue_depth ({self.max_depth})",
                _retry_after(age),
            )
        if self.max_age > 0 and age > self.max_age:
            return Pressure(
                f"oldest runnable job waited {age:.0f} s, "
                f"over limits.max_queue_age_seconds ({self.max_age:g})",
                _retry_after(age),
            )
        return None


def _retry_after(age: float) -> int:
    """A hint between 1 and 60 s: about a tenth of how late the queue runs."""
    return max(1, min(60, math.ceil(age / 10)))
