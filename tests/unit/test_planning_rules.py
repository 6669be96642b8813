"""The planning rules shared by the planner and admission (``domain/planning.py``)."""

from __future__ import annotations

from pushgate.domain.jobs import PlanStats
from pushgate.domain.planning import mark_unsendable, tally, target_row
from pushgate.providers.base import Target


def test_target_row_is_the_providers_compact_form() -> None:
    """``domain`` may not import ``providers``: its copy of ``Target.row`` must stay equal."""
    for env in (None, "", "sandbox"):
        r = {"recipient_id": "dev_1", "token": "tok", "environment": env}
        assert target_row(r) == Target("dev_1", "tok", env).row()


def test_tally_counts_each_new_recipient_once_and_batches_the_sendable() -> None:
    rows = [
        {"recipient_id": "a", "provider": "fcm", "token": "ta"},
        {"recipient_id": "a", "provider": "fcm", "token": "ta"},
        {"recipient_id": "b", "provider": "apns", "token": "tb"},
        {"recipient_id": "c", "provider": "fcm", "token": "tc"},
    ]
    mark_unsendable(rows, expired=False, configured={"fcm"}, app_name="shop")
    stats = PlanStats()
    counts, batches = tally(rows, {"a", "b"}, stats)  # "c" was planned before
    assert counts == {
        "fcm": {"planned": 1, "failed": 0, "expired": 0},
        "apns": {"planned": 1, "failed": 1, "expired": 0},
    }
    assert batches == {"fcm": [["a", "ta"]]}
    assert (stats.planned, stats.dispatched, stats.no_credentials) == (2, 1, 1)
    assert rows[2]["error_code"] == "no_credentials" and "'shop' has no apns" in rows[2]["error_message"]


def test_an_expired_publish_plans_every_row_expired() -> None:
    rows = [{"recipient_id": "a", "provider": "apns", "token": "ta"}]
    mark_unsendable(rows, expired=True, configured=set(), app_name="shop")
    counts, batches = tally(rows, {"a"}, PlanStats())
    assert counts == {"apns": {"planned": 1, "failed": 0, "expired": 1}} and batches == {}
