"""When to try a failed delivery again: pure policy, no I/O."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from pushgate.domain.outcomes import Outcome


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """One provider's retry ladder (``[retry]`` merged with ``[retry.<provider>]``)."""

    ladder: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 3600.0)
    jitter: float = 0.2
    max_attempts: int = 6
    #: No retry is scheduled past ``created_at + max_age`` (0: no limit).
    max_age: float = 86400.0
    quota_min_delay: float = 0.0


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    outcome: Outcome,
    retry_after: float | None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``.

    A provider's ``Retry-After`` is honoured exactly (the provider knows best, and sending
    earlier just burns an attempt); otherwise the ladder step for this attempt with jitter, so a
    burst of failures does not come back as a burst. A ``quota`` answer never waits less than
    the provider's floor (FCM: 60 s).
    """
    if retry_after is not None and retry_after > 0:
        delay = float(retry_after)
    else:
        step = policy.ladder[min(max(attempt, 1), len(policy.ladder)) - 1]
        r = rng or random
        delay = step * r.uniform(1 - policy.jitter, 1 + policy.jitter)
    if outcome is Outcome.QUOTA:
        delay = max(delay, policy.quota_min_delay)
    return max(0.01, delay)


class RetryDecision(enum.StrEnum):
    """What happens to one retryable failure: ``retry`` at ``run_at``, or give up."""

    RETRY = "retry"
    #: The deadline (``expire_at``/TTL) comes before the retry: the notification is stale.
    EXPIRED = "expired"
    #: Attempts or ``max_age`` are used up: a dead letter.
    EXHAUSTED = "exhausted"


def decide_retry(
    policy: RetryPolicy,
    attempt: int,
    outcome: Outcome,
    retry_after: float | None,
    *,
    now: float,
    created_at: float,
    deadline: float | None,
    rng: random.Random | None = None,
) -> tuple[RetryDecision, float]:
    """``(decision, run_at)`` for a retryable failure of attempt ``attempt``."""
    if attempt >= policy.max_attempts:
        return RetryDecision.EXHAUSTED, now
    run_at = now + retry_delay(policy, attempt, outcome, retry_after, rng)
    if deadline is not None and run_at >= deadline:
        return RetryDecision.EXPIRED, now
    if policy.max_age > 0 and run_at > created_at + policy.max_age:
        return RetryDecision.EXHAUSTED, now
    return RetryDecision.RETRY, run_at
