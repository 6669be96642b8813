"""Housekeeping every worker process runs beside its workers: closing publishes whose completion
check never ran, ageing out health minutes and frequency-cap counters, and pruning devices not
seen for ``devices.max_inactive_days``.

Each chore is a loop of its own that waits on the engine's stop event, so a slow chore never
delays a send and a stop ends them all at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pushgate.config import Settings
from pushgate.domain import clock
from pushgate.store.caps import prune as prune_caps
from pushgate.store.db import Database
from pushgate.store.devices import DeviceStore
from pushgate.store.health import ProviderHealthStore
from pushgate.store.publishes import PublishStore

log = logging.getLogger("pushgate.engine")

#: Seconds between two runs of the stale-device pruning (``devices.prune_inactive``).
PRUNE_INTERVAL = 3600.0
#: Frequency-cap decisions are kept this long after they were made: longer than any publish's
#: planning takes, so a later page of a publish still being planned finds its first decision.
CAP_MARKS_SECONDS = 2 * 86400.0


def seen_after(settings: Settings) -> float | None:
    """Devices last seen before this time are stale (``devices.max_inactive_days``)."""
    days = settings.devices.max_inactive_days
    return time.time() - days * 86400 if days > 0 else None


class Housekeeping:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        publishes: PublishStore,
        health: ProviderHealthStore,
        stop: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.db = db
        self.publishes = publishes
        self.health = health
        self.devices = DeviceStore(db)
        self.stop = stop

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; True when the engine is stopping."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def sweep_loop(self) -> None:
        """Close publishes whose last batch committed but whose completion check never ran; drop
        health minutes that left the rolling window and cap counters of windows that ended."""
        while not await self._wait(self.settings.engine.sweep_interval):
            try:
                for publish_id in await self.publishes.stuck():
                    if await self.publishes.finish_if_done(publish_id):
                        log.info("sweep closed publish %s", publish_id)
                # Health minutes that left the rolling window (kept one minute longer).
                await self.health.prune_events(time.time() - self.settings.health.window_seconds - 60)
                async with self.db.write() as conn:
                    await prune_caps(conn, clock.now() - CAP_MARKS_SECONDS)
            except Exception:
                log.exception("sweeping stuck publishes failed; retrying at the next run")

    async def prune_loop(self) -> None:
        """Delete stale devices at start and then every ``PRUNE_INTERVAL`` seconds."""
        while not self.stop.is_set():
            cutoff = seen_after(self.settings)
            try:
                total = 0
                while cutoff is not None and not self.stop.is_set():
                    n = await self.devices.prune_inactive(cutoff)
                    total += n
                    await asyncio.sleep(0)  # let the API and the senders run between batches
                    if n == 0:
                        break
                if total:
                    log.info(
                        "pruned %d device(s) not seen for %g days",
                        total,
                        self.settings.devices.max_inactive_days,
                    )
            except Exception:
                log.exception("pruning inactive devices failed; retrying at the next run")
            if await self._wait(PRUNE_INTERVAL):
                return
