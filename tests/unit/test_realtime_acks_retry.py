"""A session's ack (``realtime/delivery.py``): recorded even when the database fails once.

The ack is the ``first`` mode's only signal: an ack whose write failed (a busy database, a
connection dropped) and was given up at once let the push go to a user who had the notification.
"""

from __future__ import annotations

from typing import Any

import pytest

from pushgate.realtime import delivery
from pushgate.realtime.delivery import RealtimeDelivery
from pushgate.store.publishes.receipts import ReceiptResult, Recorded


class FlakyAcks:
    """Fails its first ``failures`` writes, then records."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def record_ack(self, *_args: Any) -> Recorded:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("the database went away")
        return Recorded(ReceiptResult.RECORDED)


async def test_an_ack_whose_write_fails_once_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "ACK_RETRY_SECONDS", 0.0)
    acks = FlakyAcks(failures=1)
    rt = RealtimeDelivery(None, acks)  # type: ignore[arg-type]
    await rt._record_ack("app_1", "pub_1", "sid", "u1", 0.0)
    assert acks.calls == 2


async def test_an_ack_gives_up_after_its_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "ACK_RETRY_SECONDS", 0.0)
    acks = FlakyAcks(failures=10**6)
    rt = RealtimeDelivery(None, acks)  # type: ignore[arg-type]
    await rt._record_ack("app_1", "pub_1", "sid", "u1", 0.0)
    assert acks.calls == delivery.ACK_RETRIES
