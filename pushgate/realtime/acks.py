"""Sessions' acks of ``notification`` events, recorded together (docs/realtime.md).

A channel publish to 2,000 sessions brings 2,000 acks back within milliseconds. Recorded one
transaction each, they queued behind the database's write lock (SQLite has one writer), the
emitting worker's own commit waited behind them, and acks that came before that commit were
retried every 250 ms, each retry another transaction: the last session got its event after 30 s
(`pushgate bench realtime`). So acks go into one queue per process and a single task writes what
has arrived in one transaction (group commit, as admission does): a broadcast's acks cost a few
transactions, not thousands.

An ack that finds no record yet (the worker has not committed the sessions' records: a fast
client) is kept and tried again with the next batches for up to :data:`GIVE_UP_SECONDS`; the
user's ack (``realtime_acks``, what ``first`` reads) is written at once all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from pushgate.domain import clock
from pushgate.store.publishes.receipts import ReceiptResult
from pushgate.store.realtime_deliveries import Ack, RealtimeDeliveries

log = logging.getLogger("pushgate.realtime")

#: The most acks one transaction records.
BATCH = 1000
#: How long acks gather before a write (what arrives meanwhile shares the transaction).
GATHER_SECONDS = 0.02
#: An ack whose session record is still missing is tried again after this long…
RETRY_SECONDS = 0.25
#: …until this long after it came.
GIVE_UP_SECONDS = 10.0


class AckQueue:
    """This process's acks, written in batches by one task (started with the first ack)."""

    def __init__(self, store: RealtimeDeliveries) -> None:
        self.store = store
        self._new: deque[Ack] = deque()
        #: (when to try again, the ack) of acks whose record was not there yet.
        self._later: deque[tuple[float, Ack]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The write under way (its own task: stopping the queue never cancels a transaction).
        self._busy: asyncio.Task[None] | None = None

    def put(self, ack: Ack) -> None:
        """Queue an ack (called from socket.io's ack callback, on the event loop)."""
        self._new.append(ack)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="realtime-acks")

    @property
    def pending(self) -> int:
        return len(self._new) + len(self._later)

    async def stop(self) -> None:
        """Let a write under way finish, write everything still queued (acks waiting for their
        record get one last try), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._busy is not None:  # the batch the task was writing: never cut mid-transaction
            with contextlib.suppress(Exception):
                await self._busy
            self._busy = None
        while self._new or self._later:
            with contextlib.suppress(Exception):
                await self.store.record_acks(self._take(float("inf")))

    def _take(self, now: float) -> list[Ack]:
        batch: list[Ack] = []
        while self._later and self._later[0][0] <= now and len(batch) < BATCH:
            batch.append(self._later.popleft()[1])
        while self._new and len(batch) < BATCH:
            batch.append(self._new.popleft())
        return batch

    async def _run(self) -> None:
        while True:
            if not self._new:
                self._wake.clear()
                wait = self._later[0][0] - clock.now() if self._later else None
                if wait is None:
                    await self._wake.wait()
                elif wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
            await asyncio.sleep(GATHER_SECONDS)
            batch = self._take(clock.now())
            if batch:
                self._busy = asyncio.get_running_loop().create_task(self._write(batch))
                await asyncio.shield(self._busy)
                self._busy = None

    async def _write(self, batch: list[Ack]) -> None:
        try:
            results = await self.store.record_acks(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a busy or lost database: under ``first`` a lost ack is a push
            self._again(batch, f"not recorded ({exc})")
            return
        missing = [
            ack for ack, done in zip(batch, results, strict=True) if done.result is ReceiptResult.NOT_FOUND
        ]
        self._again(missing, "its publish has no record of the session")

    def _again(self, acks: list[Ack], why: str) -> None:
        """Try ``acks`` again with a later batch, until :data:`GIVE_UP_SECONDS` after each came."""
        now = clock.now()
        for ack in acks:
            if now - ack.at < GIVE_UP_SECONDS:
                self._later.append((now + RETRY_SECONDS, ack))
            else:
                log.error(
                    "realtime ack of session %s for publish %s given up: %s", ack.sid, ack.publish_id, why
                )
