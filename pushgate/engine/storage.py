"""The engine's side of storage faults: nothing is sent while outcomes cannot be committed.

A chunk is sent first and its outcomes committed after. When that commit fails because the
database cannot take writes (disk full, read-only, gone: ``store/faults.py``), dropping the
outcomes would let the job be claimed again once its lease ran out, and the chunk would be sent
a second time (a disk filling mid-fan-out produced 400 duplicates out of 2,000). Instead the
worker keeps the outcomes and retries that same commit with a growing pause, holding its claim,
and the whole process stops starting anything new meanwhile: no worker claims a job or sends a
chunk while a commit is pending or while the database refuses the write probe
(``Database.probe``). What was sent is recorded exactly once, as soon as the database is back.

Each pause doubles from ``FIRST_BACKOFF`` up to ``MAX_BACKOFF``. The log says it once per
``LOG_INTERVAL`` for the whole process (with the number of failed attempts since the last line),
not once per poll and worker, and says again when storage is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pushgate.store.db import Database
from pushgate.store.faults import StorageUnavailable

log = logging.getLogger("pushgate.engine")

T = TypeVar("T")

#: The first pause after a failed write (seconds); each further failure doubles it.
FIRST_BACKOFF = 0.1
#: The longest pause between two attempts: also the longest a recovered database waits for the
#: engine to notice.
MAX_BACKOFF = 5.0
#: At most one log line per this many seconds while storage stays unavailable.
LOG_INTERVAL = 30.0


class StorageGate:
    """One per process: retries outcome commits and keeps every worker from sending meanwhile."""

    def __init__(self, db: Database, *, log_interval: float = LOG_INTERVAL) -> None:
        self.db = db
        self.log_interval = log_interval
        #: Outcome commits waiting for the database; nothing new starts while there is one.
        self._pending = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._down_since: float | None = None
        self._logged_at: float | None = None
        self._failures = 0

    @property
    def pending(self) -> int:
        return self._pending

    @staticmethod
    def pause(attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        # The exponent is capped: an outage of hours counts thousands of attempts, and 2**1024
        # no longer converts to a float (it raised, and the held outcomes were lost).
        return min(FIRST_BACKOFF * 2 ** min(attempt, 32), MAX_BACKOFF)

    def report(self, exc: StorageUnavailable, doing: str) -> None:
        """Count a failed write; log it if nothing was logged for ``log_interval`` seconds."""
        now = time.monotonic()
        self._failures += 1
        if self._down_since is None:
            self._down_since = now
        if self._logged_at is not None and now - self._logged_at < self.log_interval:
            return
        log.error(
            "storage unavailable (%s) while %s: %s; claiming and sending are paused, %d outcome "
            "commit(s) held for retry (%d failed attempt(s) since the last report)",
            exc.reason,
            doing,
            exc.fault.message,
            self._pending,
            self._failures,
        )
        self._logged_at = now
        self._failures = 0

    def _recovered(self) -> None:
        if self._down_since is None:
            return
        log.warning(
            "storage writable again after %.1f s; claiming and sending resume",
            time.monotonic() - self._down_since,
        )
        self._down_since = None
        self._logged_at = None
        self._failures = 0

    async def commit(self, write: Callable[[], Awaitable[T]], doing: str) -> T:
        """Run ``write`` (one transaction) until it commits, pausing between storage faults.

        Used for what must not be lost once sent: the outcomes of a chunk. Any other error
        (``LeaseLost``, a bug) ends the retry and propagates as before.
        """
        attempt = 0
        try:
            while True:
                try:
                    return await write()
                except StorageUnavailable as exc:
                    if attempt == 0:
                        self._pending += 1
                        self._drained.clear()
                    self.report(exc, doing)
                    await asyncio.sleep(self.pause(attempt))
                    attempt += 1
        finally:
            if attempt:
                self._pending -= 1
                if not self._pending:
                    self._drained.set()

    async def wait_writable(self) -> bool:
        """Return once no outcome commit is pending and the database takes writes (a probe
        passes); at once when no fault was seen. Called before every claim and every send.

        True when it had to wait: a job held meanwhile may have outlived its lease, and must
        renew it before it sends anything (the dispatcher does), or a worker claiming the
        expired job would send the same chunk too.
        """
        attempt = 0
        waited = False
        while True:
            if self._pending:
                waited = True
                await self._drained.wait()
                continue
            if self.db.fault is None:
                break
            waited = True
            fault = await self.db.probe()
            if fault is None:
                break
            self.report(StorageUnavailable(fault), "waiting for storage")
            await asyncio.sleep(self.pause(attempt))
            attempt += 1
        self._recovered()
        return waited
