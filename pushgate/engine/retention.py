"""Retention: every worker process deletes finished publishes older than ``retention.days``.

Without it the database grows by a publish row and a record per notification for ever. The
sweep runs at start and then every ``retention.interval_seconds``, app by app (an app's
``[apps.<name>.retention] days`` replaces ``[retention] days``), in batches of at most
``retention.batch_size`` rows per transaction (``store/retention.py``), yielding to the event
loop between batches so the API and the dispatch keep running while a backlog is deleted.

One sweep at a time per process (a lock). Several worker processes may sweep at once: on
PostgreSQL their batches take disjoint publishes, on SQLite writers take turns anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pushgate.config import Settings
from pushgate.metrics import RETENTION_DELETED
from pushgate.store.db import Database
from pushgate.store.retention import Deleted, RetentionStore

log = logging.getLogger("pushgate.engine.retention")

DAY = 86400.0


class Retention:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.store = RetentionStore(db)
        self._lock = asyncio.Lock()

    def enabled(self) -> bool:
        """False when nothing can ever be deleted (``days = 0`` everywhere): no task is needed."""
        own = (a.retention.days for a in self.settings.apps.values() if a.retention is not None)
        return self.settings.retention.days > 0 or any(d for d in own if d)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep at start and then every ``retention.interval_seconds`` until ``stop`` is set."""
        if not self.enabled():
            return
        while not stop.is_set():
            try:
                await self.sweep(stop=stop)
            except Exception:
                log.exception("retention sweep failed; retrying at the next run")
            try:
                await asyncio.wait_for(stop.wait(), self.settings.retention.interval_seconds)
            except TimeoutError:
                pass

    async def sweep(self, now: float | None = None, stop: asyncio.Event | None = None) -> Deleted:
        """Delete every publish past its app's retention (closed before ``now - days``), batch by
        batch; returns the rows deleted. ``stop`` ends it between two batches."""
        now = time.time() if now is None else now
        total, batches = Deleted(), 0
        async with self._lock:
            for app_id, app_name in await self.store.apps():
                days = self.settings.retention_days(app_id, app_name)
                if days <= 0:
                    continue
                while stop is None or not stop.is_set():
                    batch = await self.store.delete_batch(
                        app_id, now - days * DAY, self.settings.retention.batch_size
                    )
                    if not batch.found:
                        break
                    batches += 1
                    total += batch
                    for kind, n in batch.rows().items():
                        RETENTION_DELETED.labels(kind).inc(n)
                    log.debug("retention batch %d of app %s: %s", batches, app_name, batch.rows())
                    # On SQLite the batch ran on the loop's thread: let the API and the workers in.
                    await asyncio.sleep(0)
        if batches:
            log.info(
                "retention deleted %d publish(es), %d delivery record(s), %d dead letter(s) and %d "
                "job(s) in %d batch(es)",
                total.publish,
                total.delivery,
                total.dead_letter,
                total.job,
                batches,
            )
        return total
