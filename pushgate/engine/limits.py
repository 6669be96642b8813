"""The three rate-limit layers: per (app, provider) token bucket, per app quota, global in-flight.

Limits hold per worker process (like Sentori's). A bucket that needs a short wait makes the
sender wait; a longer one defers the job to when tokens will be there. Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pushgate.config import Settings


@dataclass(slots=True)
class TokenBucket:
    """Reserve-ahead bucket: taking more than is there makes the balance negative, and the
    time until it is back to zero is the wait. ``refund`` gives back an unused reservation."""

    rate: float
    capacity: float
    tokens: float = 0.0
    #: When ``tokens`` was last brought up to date (None: never used, the bucket starts full).
    stamp: float | None = None

    def reserve(self, n: int, now: float) -> float:
        if self.stamp is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        else:
            self.tokens = self.capacity
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def refund(self, n: int) -> None:
        self.tokens = min(self.capacity, self.tokens + n)


class InFlight:
    """Layer 3: at most ``cap`` targets in provider requests at once (0: no cap)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        self._cond = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        if self.cap <= 0:
            yield
            return
        n = min(n, self.cap)  # a batch bigger than the cap goes out alone
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.cap)
            self.used += n
        try:
            yield
        finally:
            async with self._cond:
                self.used -= n
                self._cond.notify_all()


class RateLimits:
    """Layers 1 and 2, plus the throttle of a pair whose invalid-token rate is too high."""

    def __init__(self, settings: Settings, throttled: Callable[[str, str], bool]) -> None:
        self.settings = settings
        self.in_flight = InFlight(settings.rate_limits.in_flight)
        self._throttled = throttled
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}

    def _rate(self, app_name: str, provider: str | None) -> float:
        """Layer 1 (``provider``) or layer 2 (``None``): the app's override, else the default."""
        app = self.settings.apps.get(app_name)
        own = app.rate_limits if app is not None else None
        limits = self.settings.rate_limits
        if provider is None:
            override = own.app_per_second if own is not None else None
            return float(override if override is not None else limits.app_per_second)
        override = own.by_provider.get(provider) if own is not None else None
        return float(override if override is not None else limits.provider_rate(provider))

    def _bucket(self, key: tuple[str, ...], rate: float) -> TokenBucket | None:
        if rate <= 0:
            return None
        b = self._buckets.get(key)
        capacity = max(1.0, rate * self.settings.rate_limits.burst_seconds)
        if b is None or b.rate != rate:
            b = TokenBucket(rate=rate, capacity=capacity)
            self._buckets[key] = b
        return b

    def _buckets_for(self, app_id: str, app_name: str, provider: str) -> list[tuple[TokenBucket, str]]:
        rate = self._rate(app_name, provider)
        if self._throttled(app_id, provider):
            cap = self.settings.health.throttle_per_second
            if cap > 0:
                rate = min(rate, cap) if rate > 0 else cap
        out: list[tuple[TokenBucket, str]] = []
        for key, r, name in (
            ((app_id, provider), rate, "provider"),
            ((app_id,), self._rate(app_name, None), "app"),
        ):
            b = self._bucket(key, r)
            if b is not None:
                out.append((b, name))
        return out

    def chunk_cap(self, app_id: str, app_name: str, provider: str) -> int | None:
        """The most targets one request round may take: no more than a full bucket holds, or a
        slow rate (below the chunk size per burst) would make every chunk wait too long and be
        deferred again and again."""
        caps = [int(b.capacity) for b, _ in self._buckets_for(app_id, app_name, provider)]
        return max(1, min(caps)) if caps else None

    def reserve(self, app_id: str, app_name: str, provider: str, n: int) -> tuple[float, str | None]:
        """Take ``n`` pushes from the pair's and the app's buckets: ``(seconds to wait, layer)``.

        The caller must ``refund`` the same ``n`` if it decides not to send after all.
        """
        now = time.monotonic()
        wait, layer = 0.0, None
        for b, name in self._buckets_for(app_id, app_name, provider):
            w = b.reserve(n, now)
            if w > wait:
                wait, layer = w, name
        return wait, layer

    def refund(self, app_id: str, provider: str, n: int) -> None:
        for key in ((app_id, provider), (app_id,)):
            b = self._buckets.get(key)
            if b is not None:
                b.refund(n)
