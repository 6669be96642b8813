"""Outcome accounting without a database: what one chunk's answers do to records and counters."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pushgate.domain.accounting import (
    CANCELLED,
    DEFERRED_TOO_LONG,
    EXPIRED,
    Accounting,
    Attempt,
    Batch,
    account,
)
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.retry import RetryPolicy

NOW = 1_000.0


@dataclass
class T:
    recipient_id: str
    token: str

    def row(self) -> list[str]:
        return [self.recipient_id, self.token]


def batch(*, attempt: int = 1, was_retrying: bool = False, deadline: float | None = None) -> Batch:
    policy = RetryPolicy(ladder=(10.0, 20.0), jitter=0.0, max_attempts=3, max_age=3600.0)
    return Batch("fcm", attempt, policy, created_at=NOW - 1, deadline=deadline, was_retrying=was_retrying)


def moved(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def one(
    result: Attempt, b: Batch | None = None, *, cancelled: bool = False, rid: str = "dev_1"
) -> Accounting[T]:
    return account(b or batch(), [T(rid, "tok")], [result], now=NOW, cancelled=cancelled)


def test_sent_is_final_and_keeps_no_error() -> None:
    out = one(SendResult(Outcome.SENT, provider_message_id="m1", error_code="ignored"))
    [u] = out.updates
    assert (u.status, u.error_code, u.error_class, u.provider_message_id, u.sent_at, u.dead) == (
        "sent",
        None,
        "sent",
        "m1",
        NOW,
        False,
    )
    assert moved(out.counts) == {"sent": 1}
    assert not out.retries and not out.invalid


def test_terminal_token_invalidates_registered_devices_only() -> None:
    out = one(SendResult(Outcome.DEVICE_TERMINAL, error_code="UNREGISTERED"))
    assert out.updates[0].status == "invalid_token"
    assert out.invalid == {"dev_1": ("fcm: UNREGISTERED", "tok")}
    assert moved(out.counts) == {"invalid_token": 1}
    raw = one(SendResult(Outcome.DEVICE_TERMINAL), rid="tok_abc")
    assert raw.updates[0].status == "invalid_token" and raw.invalid == {}


def test_first_retryable_failure_enters_retrying_once() -> None:
    out = one(SendResult(Outcome.PROVIDER_TRANSIENT, error_code="http_503"))
    [u] = out.updates
    assert (u.status, u.error_code, u.error_class, u.dead, u.attempts) == (
        "retrying",
        "http_503",
        "provider_transient",
        False,
        1,
    )
    assert moved(out.counts) == {"retrying": 1}
    assert out.retries == {NOW + 10.0: [T("dev_1", "tok")]}
    # A second failure of a retried delivery stays counted once.
    again = one(SendResult(Outcome.QUOTA, retry_after=30), batch(attempt=2, was_retrying=True))
    assert again.updates[0].status == "retrying" and moved(again.counts) == {}
    assert list(again.retries) == [NOW + 30.0]


def test_retried_delivery_that_becomes_final_leaves_retrying() -> None:
    out = one(SendResult(Outcome.SENT), batch(attempt=2, was_retrying=True))
    assert moved(out.counts) == {"sent": 1, "retrying": -1}


def test_exhausted_attempts_fail_as_a_dead_letter() -> None:
    out = one(SendResult(Outcome.DEVICE_TRANSIENT), batch(attempt=3, was_retrying=True))
    [u] = out.updates
    assert (u.status, u.dead) == ("failed", True)
    assert moved(out.counts) == {"failed": 1, "retrying": -1}
    assert not out.retries


def test_retry_past_the_deadline_expires() -> None:
    out = one(SendResult(Outcome.PROVIDER_TRANSIENT), batch(deadline=NOW + 5))
    assert out.updates[0].status == "expired" and not out.updates[0].dead
    assert moved(out.counts) == {"expired": 1}


@pytest.mark.parametrize(
    ("code", "dead"),
    [("THIRD_PARTY_AUTH_ERROR", True), ("no_credentials", False), ("credential_invalid", False)],
)
def test_credential_refusals_are_dead_letters_but_local_failures_are_not(code: str, dead: bool) -> None:
    out = one(SendResult(Outcome.CREDENTIAL, error_code=code))
    assert (out.updates[0].status, out.updates[0].dead, out.updates[0].error_class) == (
        "failed",
        dead,
        "credential",
    )


def test_payload_error_fails_without_retry() -> None:
    out = one(SendResult(Outcome.PAYLOAD, error_code="too_large"))
    assert (out.updates[0].status, out.updates[0].dead) == ("failed", False)
    assert moved(out.counts) == {"failed": 1}


def test_not_attempted_targets_have_no_error_class() -> None:
    expired = one(EXPIRED).updates[0]
    assert (expired.status, expired.error_code, expired.error_class, expired.dead) == (
        "expired",
        "expired",
        None,
        False,
    )
    too_old = one(DEFERRED_TOO_LONG).updates[0]
    assert (too_old.status, too_old.error_code, too_old.error_class, too_old.dead) == (
        "failed",
        "deferred_too_long",
        None,
        True,
    )
    assert too_old.error_message and "max_age_seconds" in too_old.error_message
    assert moved(one(DEFERRED_TOO_LONG, batch(attempt=2, was_retrying=True)).counts) == {
        "failed": 1,
        "retrying": -1,
    }


def test_after_a_cancel_what_was_sent_moves_out_of_cancelled_and_retries_stay_cancelled() -> None:
    targets = [T("dev_1", "a"), T("dev_2", "b"), T("dev_3", "c"), T("dev_4", "d")]
    results: list[Attempt] = [SendResult(Outcome.SENT), SendResult(Outcome.PROVIDER_TRANSIENT)]
    out = account(batch(), targets, results, now=NOW, cancelled=True)
    assert [u.status for u in out.updates] == ["sent", "cancelled", "cancelled", "cancelled"]
    # Targets past the results were not attempted: cancelled, with the code and no class.
    assert (out.updates[2].error_code, out.updates[2].error_class) == ("cancelled", None)
    assert moved(out.counts) == {"sent": 1, "cancelled": -1}
    assert not out.retries


def test_not_attempted_cancel_without_a_cancelled_publish_goes_back_to_the_ladder() -> None:
    out = one(CANCELLED)
    assert out.updates[0].status == "retrying" and out.updates[0].error_class is None
    assert moved(out.counts) == {"retrying": 1}


def test_retries_are_grouped_by_run_time() -> None:
    targets = [T("dev_1", "a"), T("dev_2", "b"), T("dev_3", "c")]
    results: list[Attempt] = [
        SendResult(Outcome.QUOTA, retry_after=30),
        SendResult(Outcome.QUOTA, retry_after=30),
        SendResult(Outcome.QUOTA, retry_after=60),
    ]
    out = account(batch(), targets, results, now=NOW, cancelled=False)
    assert {k: [t.recipient_id for t in v] for k, v in out.retries.items()} == {
        NOW + 30: ["dev_1", "dev_2"],
        NOW + 60: ["dev_3"],
    }
    assert moved(out.counts) == {"retrying": 3}
