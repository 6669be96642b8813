"""Sessions' acks (``realtime/acks.py``): recorded in batches, and recorded even when the
database fails once or the session's record is not committed yet.

The ack is the ``first`` mode's only signal: an ack whose write failed (a busy database, a
connection dropped) and was given up at once let the push go to a user who had the notification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pushgate.domain import clock
from pushgate.realtime import acks as acks_module
from pushgate.realtime.acks import AckQueue
from pushgate.store.publishes.receipts import ReceiptResult, Recorded
from pushgate.store.realtime_deliveries import Ack


class FlakyStore:
    """Fails its first ``failures`` writes; then finds no record ``missing`` times per ack;
    then records. Keeps the batches it was given."""

    def __init__(self, failures: int = 0, missing: int = 0) -> None:
        self.failures = failures
        self.missing = missing
        self.batches: list[list[str]] = []
        self.recorded: list[str] = []
        self._misses: dict[str, int] = {}

    async def record_acks(self, acks: Sequence[Ack]) -> list[Recorded]:
        self.batches.append([a.sid for a in acks])
        if len(self.batches) <= self.failures:
            raise ConnectionError("the database went away")
        out = []
        for a in acks:
            seen = self._misses.get(a.sid, 0)
            if seen < self.missing:
                self._misses[a.sid] = seen + 1
                out.append(Recorded(ReceiptResult.NOT_FOUND))
            else:
                self.recorded.append(a.sid)
                out.append(Recorded(ReceiptResult.RECORDED))
        return out


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acks_module, "RETRY_SECONDS", 0.0)
    monkeypatch.setattr(acks_module, "GATHER_SECONDS", 0.01)


async def _until(cond: object, what: str) -> None:
    for _ in range(500):
        if callable(cond) and cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _ack(sid: str) -> Ack:
    return Ack("app_1", "pub_1", sid, "u1", clock.now())


async def test_acks_that_arrive_together_share_one_write() -> None:
    store = FlakyStore()
    queue = AckQueue(store)  # type: ignore[arg-type]
    for n in range(300):
        queue.put(_ack(f"s{n}"))
    await _until(lambda: len(store.recorded) == 300, "300 acks recorded")
    assert len(store.batches) == 1 and queue.pending == 0
    await queue.stop()


async def test_an_ack_whose_write_fails_once_is_retried() -> None:
    store = FlakyStore(failures=1)
    queue = AckQueue(store)  # type: ignore[arg-type]
    queue.put(_ack("s1"))
    await _until(lambda: store.recorded == ["s1"], "the ack recorded after a failed write")
    assert store.batches == [["s1"], ["s1"]]
    await queue.stop()


async def test_an_ack_before_its_record_is_committed_is_tried_again() -> None:
    store = FlakyStore(missing=2)
    queue = AckQueue(store)  # type: ignore[arg-type]
    queue.put(_ack("s1"))
    await _until(lambda: store.recorded == ["s1"], "the ack recorded once its record exists")
    assert len(store.batches) == 3
    await queue.stop()


async def test_an_ack_is_given_up_after_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acks_module, "GIVE_UP_SECONDS", 0.05)
    store = FlakyStore(missing=10**6)
    queue = AckQueue(store)  # type: ignore[arg-type]
    queue.put(_ack("s1"))
    await _until(lambda: len(store.batches) >= 2 and queue.pending == 0, "the ack given up")
    assert store.recorded == []
    await queue.stop()


class BlockingStore(FlakyStore):
    """Holds its first write until ``release`` is set (a slow transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def record_acks(self, acks: Sequence[Ack]) -> list[Recorded]:
        if not self.writing.is_set():
            self.writing.set()
            await self.release.wait()
        return await super().record_acks(acks)


async def test_stop_during_a_write_loses_no_ack() -> None:
    store = BlockingStore()
    queue = AckQueue(store)  # type: ignore[arg-type]
    queue.put(_ack("s1"))
    await asyncio.wait_for(store.writing.wait(), 5)
    stopping = asyncio.create_task(queue.stop())
    await asyncio.sleep(0.05)
    store.release.set()
    await asyncio.wait_for(stopping, 5)
    assert store.recorded == ["s1"] and queue.pending == 0


async def test_stop_writes_the_acks_waiting_for_their_record() -> None:
    store = FlakyStore(missing=1)
    queue = AckQueue(store)  # type: ignore[arg-type]
    queue.put(_ack("s1"))
    await _until(lambda: len(store.batches) == 1 and queue.pending == 1, "the first try")
    await queue.stop()
    assert store.recorded == ["s1"] and queue.pending == 0


async def test_stop_writes_every_queued_ack_not_only_one_batch() -> None:
    store = FlakyStore()
    queue = AckQueue(store)  # type: ignore[arg-type]
    for n in range(acks_module.BATCH + 500):
        queue.put(_ack(f"s{n}"))
    await queue.stop()
    assert len(store.recorded) == acks_module.BATCH + 500 and queue.pending == 0
