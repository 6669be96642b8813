"""Invalid-token health of one (app, provider) pair over a rolling window: pure rules.

A sender that keeps pushing to dead tokens is what providers throttle or block, so a high
share of ``device_terminal`` answers is a warning sign about the sender, not just the devices.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HealthRules:
    invalid_rate_threshold: float = 0.10
    invalid_min_events: int = 20


@dataclass(frozen=True, slots=True)
class InvalidHealth:
    answers: int
    invalid: int
    rate: float
    #: At or over the threshold (rate and count): warn and throttle.
    throttled: bool
    #: How far from the throttle: the rate margin left and invalid answers still to go (0 when
    #: throttled). Both must reach 0 for the pair to be throttled.
    rate_margin: float
    events_to_threshold: int


def invalid_health(counts: dict[str, int], rules: HealthRules) -> InvalidHealth:
    """``counts``: answers in the window by class (``sent``, ``device_terminal``, …)."""
    answers = sum(counts.values())
    invalid = counts.get("device_terminal", 0)
    rate = invalid / answers if answers else 0.0
    throttled = invalid >= rules.invalid_min_events and rate >= rules.invalid_rate_threshold
    return InvalidHealth(
        answers=answers,
        invalid=invalid,
        rate=rate,
        throttled=throttled,
        rate_margin=0.0 if throttled else max(0.0, rules.invalid_rate_threshold - rate),
        events_to_threshold=0 if throttled else max(0, rules.invalid_min_events - invalid),
    )
