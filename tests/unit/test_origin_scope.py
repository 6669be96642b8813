"""Which breaker an answer moves: the pair's, or its push-service origin's (pure rules)."""

from __future__ import annotations

from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.quarantine import OPEN, Breaker, BreakerRules, by_scope, observe

SENT = SendResult(Outcome.SENT)
REFUSED = SendResult(Outcome.CREDENTIAL, error_code="http_403")
DOWN = SendResult(Outcome.PROVIDER_TRANSIENT, error_code="http_503")
OAUTH = SendResult(Outcome.CREDENTIAL, error_code="oauth_failed")
A, B = "https://push.a.example", "https://push.b.example:8443"


def test_an_origins_failures_stay_with_that_origin() -> None:
    pair, per = by_scope([A, B, B, A], [SENT, REFUSED, DOWN, SENT])
    assert per == {A: [SENT, SENT], B: [REFUSED, DOWN]}
    # The pair sees every answer as answered: its breaker cannot open on them.
    assert [r.outcome for r in pair] == [Outcome.SENT] * 4
    assert observe(Breaker(), pair, BreakerRules(), 0.0, probing=False) == Breaker()
    assert observe(Breaker(), per[B], BreakerRules(), 0.0, probing=False).state == OPEN


def test_provider_wide_failures_and_targets_without_origin_stay_with_the_pair() -> None:
    pair, per = by_scope([A, None, B], [OAUTH, DOWN, SENT])
    assert pair == [OAUTH, DOWN, SENT]
    assert per == {B: [SENT]}
    assert observe(Breaker(), pair, BreakerRules(), 0.0, probing=False).state == OPEN


def test_a_streak_on_one_origin_is_not_ended_by_another_origins_successes() -> None:
    rules = BreakerRules(failure_threshold=3)
    _, per = by_scope([A, B, A, B, A], [DOWN, SENT, DOWN, SENT, DOWN])
    assert observe(Breaker(), per[A], rules, 0.0, probing=False).state == OPEN
    assert observe(Breaker(), per[B], rules, 0.0, probing=False) == Breaker()


def test_a_refusal_beside_a_success_from_the_same_origin_is_one_subscriptions_problem() -> None:
    _, per = by_scope([A, A, B], [REFUSED, SENT, REFUSED])
    assert per == {A: [SENT], B: [REFUSED]}
    assert observe(Breaker(), per[A], BreakerRules(), 0.0, probing=False) == Breaker()
