"""The circuit breaker's rules where ``make mutation`` found them unguarded (issue 8, item 5).

``pushgate.domain.quarantine`` is pure (no I/O), so its promises are asserted on its public
functions directly; the engine turns its verdicts into deferrals that the gateway tests see.
"""

from __future__ import annotations

import dataclasses

from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.quarantine import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerRules, observe

DOWN = SendResult(Outcome.PROVIDER_TRANSIENT, error_code="http_503")
REFUSED = SendResult(Outcome.CREDENTIAL, error_code="THIRD_PARTY_AUTH_ERROR")
RULES = BreakerRules(failure_threshold=5, cooldown=30, max_cooldown=100, credential_cooldown=60)


def _probing(b: Breaker) -> Breaker:
    """``b`` after a sender won the probe (what the store records when it hands one out)."""
    return dataclasses.replace(b, state=HALF_OPEN, probe_until=b.open_until)


def test_a_probe_refused_for_the_credential_doubles_the_credential_cooldown() -> None:
    """A credential still refused after its cooldown is not retried sooner and sooner: each
    failed probe doubles the wait, up to ``max_cooldown`` (or the credential cooldown if that
    is longer)."""
    opened = observe(Breaker(), [REFUSED], RULES, 0, probing=False)
    assert (opened.state, opened.cooldown, opened.open_until) == (OPEN, 60, 60)
    again = observe(_probing(opened), [REFUSED], RULES, 60, probing=True)
    assert (again.state, again.cooldown, again.open_until) == (OPEN, 100, 160)
    long_credential = dataclasses.replace(RULES, credential_cooldown=300)
    opened = observe(Breaker(), [REFUSED], long_credential, 0, probing=False)
    again = observe(_probing(opened), [REFUSED], long_credential, 300, probing=True)
    assert again.cooldown == 300  # never below the credential cooldown itself


def test_late_answers_keep_counting_the_failure_streak() -> None:
    """Answers that were in flight when the breaker opened do not move its cooldown, but they
    are counted, and the probe's verdict builds on that count."""
    opened = observe(Breaker(), [DOWN] * 5, RULES, 0, probing=False)
    late = observe(opened, [DOWN, DOWN], RULES, 1, probing=False)
    assert (late.state, late.open_until, late.failures) == (OPEN, 30, 7)
    reopened = observe(_probing(late), [DOWN], RULES, 30, probing=True)
    assert (reopened.state, reopened.failures, reopened.cooldown) == (OPEN, 8, 60)


def test_an_outage_keeps_the_time_it_began() -> None:
    """``opened_at`` is when the pair first went down: a failed probe re-opens the breaker
    without moving it, and only a closed breaker starts a new outage."""
    opened = observe(Breaker(), [DOWN] * 5, RULES, 7, probing=False)
    assert opened.opened_at == 7
    reopened = observe(_probing(opened), [DOWN], RULES, 40, probing=True)
    assert reopened.state == OPEN and reopened.opened_at == 7
    closed = observe(_probing(reopened), [SendResult(Outcome.SENT)], RULES, 200, probing=True)
    assert closed.state == CLOSED
    later = observe(closed, [DOWN] * 5, RULES, 500, probing=False)
    assert later.opened_at == 500
