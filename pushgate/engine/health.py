"""Invalid-token health per (app, provider): read from the shared rolling window, cached.

The dispatcher asks before every batch whether a pair is throttled; the answer is re-read at
most every ``REFRESH_SECONDS`` per app, so the check costs nothing on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pushgate.config import HealthSettings
from pushgate.domain.health import HealthRules, InvalidHealth, invalid_health
from pushgate.metrics import INVALID_RATE
from pushgate.store.health import ProviderHealthStore

log = logging.getLogger("pushgate.engine")

REFRESH_SECONDS = 2.0


class HealthMonitor:
    def __init__(self, store: ProviderHealthStore, settings: HealthSettings) -> None:
        self.store = store
        self.settings = settings
        self.rules = HealthRules(settings.invalid_rate_threshold, settings.invalid_min_events)
        self._read_at: dict[str, float] = {}
        self._state: dict[tuple[str, str], InvalidHealth] = {}
        # Concurrent batches wait for one read instead of sending on a stale answer.
        self._lock = asyncio.Lock()

    async def refresh(self, app_id: str) -> None:
        if time.monotonic() - self._read_at.get(app_id, -1e9) < REFRESH_SECONDS:
            return
        async with self._lock:
            if time.monotonic() - self._read_at.get(app_id, -1e9) < REFRESH_SECONDS:
                return
            window = await self.store.window(app_id, time.time() - self.settings.window_seconds)
            self._read_at[app_id] = time.monotonic()
            self._apply(app_id, window)

    def _apply(self, app_id: str, window: dict[str, dict[str, int]]) -> None:
        # A pair whose answers all left the window is healthy again (an empty window).
        known = {p for a, p in self._state if a == app_id}
        for provider in known - set(window):
            window = {**window, provider: {}}
        for provider, counts in window.items():
            health = invalid_health(counts, self.rules)
            before = self._state.get((app_id, provider))
            self._state[(app_id, provider)] = health
            INVALID_RATE.labels(app_id, provider).set(health.rate)
            if health.throttled and (before is None or not before.throttled):
                log.warning(
                    "%s/%s: %.0f%% of the last %d answers were invalid tokens (%d); throttling to "
                    "%g pushes/s until the rate falls (providers penalise senders that keep "
                    "pushing to dead tokens)",
                    app_id,
                    provider,
                    health.rate * 100,
                    health.answers,
                    health.invalid,
                    self.settings.throttle_per_second,
                )
            elif before is not None and before.throttled and not health.throttled:
                log.info("%s/%s: invalid-token rate back under the threshold", app_id, provider)

    def throttled(self, app_id: str, provider: str) -> bool:
        h = self._state.get((app_id, provider))
        return h is not None and h.throttled
