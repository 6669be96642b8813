"""When to try a failed delivery again: pure policy, no I/O."""

from __future__ import annotations

import random


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``.

    A provider's ``Retry-After`` is honoured exactly (the provider knows best, and sending
    earlier just burns an attempt); otherwise exponential backoff with +-20% jitter so a burst of
    failures does not come back as a burst.
    """
    if retry_after is not None and retry_after > 0:
        return float(retry_after)
    r = rng or random
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(0.05, delay * r.uniform(0.8, 1.2))
