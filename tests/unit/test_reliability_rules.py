"""The pure rules behind retries, quarantine, invalid-token health and rate limits."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pushgate.config import ConfigError, load_settings
from pushgate.domain.health import HealthRules, invalid_health
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.quarantine import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerRules,
    gate,
    observe,
)
from pushgate.domain.retry import RetryDecision, RetryPolicy, decide_retry, retry_delay
from pushgate.engine.dispatcher import retry_policies
from pushgate.engine.limits import RateLimits, TokenBucket

SENT = SendResult(Outcome.SENT)
DOWN = SendResult(Outcome.PROVIDER_TRANSIENT, error_code="http_503")
REFUSED = SendResult(Outcome.CREDENTIAL, error_code="THIRD_PARTY_AUTH_ERROR")
GONE = SendResult(Outcome.DEVICE_TERMINAL, error_code="UNREGISTERED")


# ---- retry ladder ---------------------------------------------------------------------------------


def test_ladder_steps_with_jitter_and_last_step_repeating() -> None:
    policy = RetryPolicy(ladder=(5, 30, 120), jitter=0.2)
    rng = random.Random(7)
    for attempt, step in ((1, 5), (2, 30), (3, 120), (4, 120), (9, 120)):
        delays = [retry_delay(policy, attempt, Outcome.PROVIDER_TRANSIENT, None, rng) for _ in range(200)]
        assert step * 0.8 <= min(delays) and max(delays) <= step * 1.2
        assert max(delays) - min(delays) > step * 0.2  # really jittered


def test_retry_after_is_exact_and_quota_has_a_floor() -> None:
    policy = RetryPolicy(ladder=(5,), quota_min_delay=60)
    assert retry_delay(policy, 1, Outcome.PROVIDER_TRANSIENT, 7.0) == 7.0
    assert retry_delay(policy, 1, Outcome.DEVICE_TRANSIENT, 7.0) == 7.0
    assert retry_delay(policy, 1, Outcome.QUOTA, 7.0) == 60.0
    assert retry_delay(policy, 1, Outcome.QUOTA, 90.0) == 90.0


def test_decide_retry_expiry_attempts_and_age() -> None:
    policy = RetryPolicy(ladder=(10,), jitter=0, max_attempts=3, max_age=100)
    now, created = 1000.0, 950.0
    retry = decide_retry(policy, 1, Outcome.QUOTA, None, deadline=None, now=now, created_at=created)
    assert retry == (RetryDecision.RETRY, 1010.0)
    exhausted = decide_retry(policy, 3, Outcome.QUOTA, None, deadline=None, now=now, created_at=created)
    assert exhausted[0] == RetryDecision.EXHAUSTED
    # The notification's deadline comes first: never retried past expire_at / ttl.
    expired = decide_retry(policy, 1, Outcome.QUOTA, None, deadline=1005.0, now=now, created_at=created)
    assert expired[0] == RetryDecision.EXPIRED
    # A retry that would land after created_at + max_age is not scheduled.
    too_old = decide_retry(policy, 1, Outcome.QUOTA, 60.0, deadline=None, now=now, created_at=created)
    assert too_old[0] == RetryDecision.EXHAUSTED


def test_retry_config_per_provider_overrides() -> None:
    s = load_settings(
        env={
            "PUSHGATE_RETRY_LADDER": "[1, 2]",
            "PUSHGATE_RETRY_MAX_ATTEMPTS": "4",
            "PUSHGATE_RETRY_APNS_MAX_ATTEMPTS": "9",
            "PUSHGATE_RETRY_WEBPUSH_LADDER": "[3]",
        }
    )
    p = retry_policies(s)
    assert p["apns"].max_attempts == 9 and p["apns"].ladder == (1, 2)
    assert p["webpush"].ladder == (3,) and p["webpush"].max_attempts == 4
    assert p["fcm"].quota_min_delay == 60 and p["hms"].quota_min_delay == 0
    # Overriding another FCM key keeps FCM's own 60 s floor; a larger value wins.
    fcm = retry_policies(load_settings(env={"PUSHGATE_RETRY_FCM_MAX_ATTEMPTS": "9"}))["fcm"]
    assert fcm.max_attempts == 9 and fcm.quota_min_delay == 60
    fcm = retry_policies(load_settings(env={"PUSHGATE_RETRY_FCM_QUOTA_MIN_DELAY": "90"}))["fcm"]
    assert fcm.quota_min_delay == 90
    with pytest.raises(ConfigError, match=r"retry\.max_attempts"):
        load_settings(env={"PUSHGATE_RETRY_MAX_ATTEMPTS": "0"})
    with pytest.raises(ConfigError, match=r"retry\.fcm\.ladder"):
        load_settings(env={"PUSHGATE_RETRY_FCM_LADDER": "[]"})
    with pytest.raises(ConfigError, match=r"quarantine\.max_cooldown"):
        load_settings(env={"PUSHGATE_QUARANTINE_COOLDOWN": "60", "PUSHGATE_QUARANTINE_MAX_COOLDOWN": "10"})


# ---- quarantine -----------------------------------------------------------------------------------

RULES = BreakerRules(failure_threshold=5, cooldown=30, max_cooldown=100, credential_cooldown=60)


def test_streak_of_provider_transient_opens() -> None:
    b = observe(Breaker(), [DOWN] * 4, RULES, 0, probing=False)
    assert b.state == CLOSED and b.failures == 4
    # A healthy answer (even a dead token) ends the streak.
    b = observe(b, [GONE, DOWN], RULES, 1, probing=False)
    assert b.state == CLOSED and b.failures == 1
    b = observe(b, [DOWN] * 4, RULES, 2, probing=False)
    assert b.state == OPEN and b.open_until == 32 and b.reason_code == "http_503"
    assert b.reason_class == "provider_transient"


def test_any_credential_answer_opens_for_the_credential_cooldown() -> None:
    b = observe(Breaker(), [SENT, REFUSED, SENT], RULES, 10, probing=False)
    assert b.state == OPEN and b.open_until == 70 and b.reason_class == "credential"


def test_gate_defers_then_probes_then_closes_or_doubles() -> None:
    b = observe(Breaker(), [DOWN] * 5, RULES, 0, probing=False)
    assert gate(b, 10).defer_until == 30 and not gate(b, 10).send
    assert gate(b, 30).probe
    probing = dataclasses.replace(b, state=HALF_OPEN, probe_until=60)
    assert gate(probing, 31).defer_until == 60  # someone else probes: wait for its verdict
    assert gate(probing, 61).probe  # that probe went silent: take over
    again = observe(probing, [DOWN], RULES, 31, probing=True)
    assert again.state == OPEN and again.cooldown == 60 and again.open_until == 91
    third = observe(again, [DOWN], RULES, 91, probing=True)
    assert third.cooldown == 100  # capped at max_cooldown
    assert observe(again, [SENT], RULES, 91, probing=True) == Breaker()
    # A quota answer also shows the provider is up.
    assert observe(again, [SendResult(Outcome.QUOTA)], RULES, 91, probing=True).state == CLOSED


def test_late_answers_of_an_open_breaker_do_not_move_it() -> None:
    b = observe(Breaker(), [REFUSED], RULES, 0, probing=False)
    late = observe(b, [REFUSED, DOWN], RULES, 1, probing=False)
    assert (late.state, late.open_until, late.cooldown) == (OPEN, 60, 60)
    assert observe(b, [SENT], RULES, 1, probing=False).state == OPEN


def test_threshold_zero_never_opens_on_transients() -> None:
    rules = BreakerRules(failure_threshold=0)
    assert observe(Breaker(), [DOWN] * 50, rules, 0, probing=False).state == CLOSED


# ---- invalid-token health -------------------------------------------------------------------------


def test_invalid_health_needs_both_rate_and_count() -> None:
    rules = HealthRules(invalid_rate_threshold=0.1, invalid_min_events=20)
    few = invalid_health({"sent": 10, "device_terminal": 10}, rules)
    assert few.rate == 0.5 and not few.throttled and few.events_to_threshold == 10
    diluted = invalid_health({"sent": 1000, "device_terminal": 50}, rules)
    assert not diluted.throttled and diluted.events_to_threshold == 0
    assert diluted.rate_margin == pytest.approx(0.1 - 50 / 1050)
    bad = invalid_health({"sent": 100, "device_terminal": 20, "quota": 5}, rules)
    assert bad.throttled and bad.rate_margin == 0 and bad.events_to_threshold == 0
    assert invalid_health({}, rules).rate == 0


# ---- rate limits ----------------------------------------------------------------------------------


def test_token_bucket_reserves_ahead() -> None:
    b = TokenBucket(rate=100, capacity=100)
    assert b.reserve(100, 0.0) == 0
    assert b.reserve(50, 0.0) == pytest.approx(0.5)
    b.refund(50)
    assert b.reserve(10, 0.1) == 0  # 10 tokens came back in 0.1 s


def test_rate_limits_layers_and_app_override() -> None:
    s = load_settings(
        env={
            "PUSHGATE_RATE_LIMITS_FCM_PER_SECOND": "1000",
            "PUSHGATE_RATE_LIMITS_APP_PER_SECOND": "200",
            "PUSHGATE_HEALTH_THROTTLE_PER_SECOND": "10",
        }
    )
    limits = RateLimits(s, lambda app, provider: provider == "apns")
    wait, layer = limits.reserve("app1", "default", "fcm", 400)
    assert layer == "app" and wait == pytest.approx(1.0)  # 200 burst, 200 more at 200/s
    limits.refund("app1", "fcm", 400)
    # The throttled pair (too many invalid tokens) gets the throttle rate.
    wait, layer = limits.reserve("app2", "default", "apns", 20)
    assert layer == "provider" and wait == pytest.approx(1.0)


# ---- the lab's timed faults -----------------------------------------------------------------------


def test_lab_fault_lapses_after_for_seconds_and_records_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    from pushgate.lab import faults

    now = [1000.0]
    monkeypatch.setattr(faults.time, "time", lambda: now[0])
    book = faults.FaultBook()
    book.add(faults.FaultSpec(provider="fcm", error="503", for_seconds=30))
    assert book.judge("fcm", ("a",)).error == "503"
    now[0] += 29
    assert book.judge("fcm", ("a",)).error == "503"
    assert book.judge("apns", ("a",)).error is None
    now[0] += 2
    assert book.judge("fcm", ("a",)).error is None
    [listed] = book.list()
    assert listed["hits"] == {"a": [1000.0, 1029.0]} and listed["active"] is False


def test_chunk_cap_follows_the_smallest_bucket() -> None:
    s = load_settings(
        env={"PUSHGATE_RATE_LIMITS_FCM_PER_SECOND": "20", "PUSHGATE_RATE_LIMITS_APP_PER_SECOND": "500"}
    )
    limits = RateLimits(s, lambda app, provider: False)
    # A 20/s bucket holds 20: a chunk of 100 would wait 4 s every time and never go out.
    assert limits.chunk_cap("a", "default", "fcm") == 20
    assert limits.reserve("a", "default", "fcm", 20) == (0.0, None)
    assert limits.chunk_cap("a", "default", "apns") == 500
    assert RateLimits(load_settings(env={}), lambda a, p: False).chunk_cap("a", "default", "fcm") is None


async def test_health_throttle_lifts_when_the_window_empties() -> None:
    from pushgate.config import HealthSettings
    from pushgate.engine.health import HealthMonitor

    monitor = HealthMonitor(None, HealthSettings())  # type: ignore[arg-type]
    monitor._apply("a", {"fcm": {"device_terminal": 50, "sent": 50}})
    assert monitor.throttled("a", "fcm")
    monitor._apply("a", {})  # every answer aged out of the window
    assert not monitor.throttled("a", "fcm")
