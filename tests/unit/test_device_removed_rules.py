"""A target whose device was deleted after planning (issue 9, item 11): recorded, never sent."""

from __future__ import annotations

from dataclasses import dataclass

from pushgate.domain.accounting import DEVICE_REMOVED, Batch, account
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.retry import RetryPolicy

NOW = 1_000.0


@dataclass
class T:
    recipient_id: str
    token: str

    def row(self) -> list[str]:
        return [self.recipient_id, self.token]


def _batch(*, was_retrying: bool = False) -> Batch:
    policy = RetryPolicy(ladder=(10.0, 20.0), jitter=0.0, max_attempts=3, max_age=3600.0)
    return Batch("fcm", 1, policy, created_at=NOW - 1, deadline=None, was_retrying=was_retrying)


def test_a_removed_device_fails_without_an_answer_and_is_no_dead_letter() -> None:
    targets = [T("dev_a", "tok-a"), T("dev_b", "tok-b")]
    out = account(_batch(), targets, [SendResult(Outcome.SENT), DEVICE_REMOVED], now=NOW, cancelled=False)
    removed = out.updates[1]
    assert (removed.status, removed.error_code, removed.error_class, removed.dead) == (
        "failed",
        "device_removed",
        None,
        False,
    )
    assert removed.error_message is not None and "deleted" in removed.error_message
    assert out.counts["failed"] == 1 and out.counts["sent"] == 1
    assert not out.invalid and not out.retries


def test_a_removed_device_of_a_retried_batch_leaves_retrying() -> None:
    out = account(_batch(was_retrying=True), [T("dev_a", "t")], [DEVICE_REMOVED], now=NOW, cancelled=False)
    assert out.counts["failed"] == 1 and out.counts["retrying"] == -1


def test_a_removed_device_stays_cancelled_after_a_cancel() -> None:
    out = account(_batch(), [T("dev_a", "t")], [DEVICE_REMOVED], now=NOW, cancelled=True)
    assert out.updates[0].status == "cancelled"
    assert out.counts["cancelled"] == 0 and out.counts["failed"] == 0
