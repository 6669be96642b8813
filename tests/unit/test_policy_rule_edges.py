"""Edges between rules found in review: a window inside deferring quiet hours, and the retry
ladder's age for a release batch."""

from __future__ import annotations

from datetime import UTC, datetime

from pushgate.domain.accounting import Batch, account
from pushgate.domain.jobs import DispatchPayload
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.policy import AppPolicy, PublishPolicy, TimeRules
from pushgate.domain.retry import RetryPolicy
from pushgate.domain.status import DeliveryStatus


def test_a_window_inside_deferring_quiet_hours_is_suppressed_not_sent_days_later() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()
    pub = PublishPolicy.from_request({"deliver_between": {"start": "23:00", "end": "23:30"}})
    app = AppPolicy.from_dict({"quiet_hours": {"start": "22:00", "end": "07:00", "action": "defer"}})
    d = TimeRules(pub, app, now, None).decide("UTC")
    assert (d.status, d.reason, d.release_at) == (DeliveryStatus.SUPPRESSED, "quiet_hours", None)


class _Target:
    recipient_id = "dev_1"
    token = "t"


def test_a_release_batch_counts_its_retry_age_from_its_release() -> None:
    created = 1_000_000.0
    released = created + 30 * 3600  # its window opened 30 h after admission
    payload = DispatchPayload("fcm", 1, [["dev_1", "t"]], held=True, since=released)
    assert payload.due_since(created, None) == released
    assert DispatchPayload("fcm", 1, []).due_since(created, created + 60) == created + 60
    batch = Batch(
        provider="fcm",
        attempt=1,
        policy=RetryPolicy(),
        created_at=payload.due_since(created, None),
        deadline=None,
        was_retrying=False,
        was_held=True,
    )
    answer = SendResult(Outcome.PROVIDER_TRANSIENT, error_code="unavailable")
    out = account(batch, [_Target()], [answer], now=released + 1, cancelled=False)
    assert out.updates[0].status == "retrying" and not out.updates[0].dead
    assert out.counts["held"] == -1 and out.counts["retrying"] == 1
