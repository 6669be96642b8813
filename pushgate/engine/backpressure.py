"""Backpressure at admission, per app: refuse an app's new publishes while *its* queue is too
deep or too late.

Each app is measured against ``limits.max_queue_depth`` and ``limits.max_queue_age_seconds``
(or its own ``[apps.<name>.limits]``) on its own jobs, so one tenant's backlog turns that
tenant's publishes into 429s and nobody else's. An app is measured at most once per
``CACHE_SECONDS`` (a count that stops at the limit and one indexed ``min``), however many
requests arrive; concurrent callers share a measurement.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from pushgate.config import AppSection, LimitSettings
from pushgate.domain import clock
from pushgate.store.queue import JobQueue

CACHE_SECONDS = 1.0


@dataclass(slots=True, frozen=True)
class Pressure:
    #: Human-readable: which threshold is exceeded, with the measured value.
    reason: str
    #: Seconds a client should wait before publishing again.
    retry_after: int


@dataclass(slots=True, frozen=True)
class Thresholds:
    #: Jobs an app may have queued (0: not checked).
    max_depth: int
    #: Seconds its oldest runnable job may wait (0: not checked).
    max_age: float


class Backpressure:
    def __init__(
        self, queue: JobQueue, limits: LimitSettings, apps: Mapping[str, AppSection] | None = None
    ) -> None:
        self.queue = queue
        self.max_depth = limits.max_queue_depth
        self.max_age = limits.max_queue_age_seconds
        self.apps = apps or {}
        #: app id → (monotonic time measured, verdict); the key None is "any app" (/readyz).
        self._cache: dict[str | None, tuple[float, Pressure | None]] = {}
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_depth > 0 or self.max_age > 0 or any(s.limits for s in self.apps.values())

    def thresholds(self, app_id: str, app_name: str | None) -> Thresholds:
        """``[apps.<name or id>.limits]`` over ``[limits]``, key by key."""
        own = next((s.limits for k in (app_name, app_id) if k and (s := self.apps.get(k)) and s.limits), None)
        depth = own.max_queue_depth if own and own.max_queue_depth is not None else self.max_depth
        age = own.max_queue_age_seconds if own and own.max_queue_age_seconds is not None else self.max_age
        return Thresholds(depth, age)

    async def check(self, app_id: str | None = None, app_name: str | None = None) -> Pressure | None:
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
                verdict = await (self._measure(app_id, app_name) if app_id is not None else self._any_app())
                cached = (time.monotonic(), verdict)
                self._cache[app_id] = cached
        return cached[1]

    async def _measure(self, app_id: str, app_name: str | None) -> Pressure | None:
        limits = self.thresholds(app_id, app_name)
        # Counting one past the limit is enough to know it is over.
        depth, oldest = await self.queue.pressure(app_id, limits.max_depth + 1 if limits.max_depth else 0)
        return self.evaluate(depth, oldest, clock.now(), limits)

    async def _any_app(self) -> Pressure | None:
        for app_id, app_name in await self.queue.apps_with_jobs():
            pressure = await self._measure(app_id, app_name)
            if pressure is not None:
                return Pressure(f"an app's publishes are refused: {pressure.reason}", pressure.retry_after)
        return None

    def evaluate(
        self, depth: int, oldest_run_at: float | None, now: float, limits: Thresholds | None = None
    ) -> Pressure | None:
        """The verdict for one app's measurement: ``depth`` jobs queued, the oldest runnable one
        due since ``oldest_run_at`` (``limits``: the app's; ``[limits]`` by default)."""
        limits = limits or Thresholds(self.max_depth, self.max_age)
        age = now - oldest_run_at if oldest_run_at is not None else 0.0
        if limits.max_depth > 0 and depth > limits.max_depth:
            return Pressure(
                f"this app has more than {limits.max_depth} jobs queued (limits.max_queue_depth)",
                _retry_after(age),
            )
        if limits.max_age > 0 and age > limits.max_age:
            return Pressure(
                f"this app's oldest runnable job waited {age:.0f} s, "
                f"over limits.max_queue_age_seconds ({limits.max_age:g})",
                _retry_after(age),
            )
        return None


def _retry_after(age: float) -> int:
    """A hint between 1 and 60 s: about a tenth of how late the app's queue runs."""
    return max(1, min(60, math.ceil(age / 10)))
