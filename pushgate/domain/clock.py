"""The one clock every time rule reads: scheduling, delivery windows, quiet hours, caps, the queue.

Production reads the system clock. Tests move it forward (:meth:`Clock.advance`) to run a day of
delivery windows in seconds: the queue, the planner and the recorders compare against this
clock, so a job held until 09:00 tomorrow becomes due when the clock says so, exactly as it
would after a night of real waiting. Provider-facing timers (HTTP timeouts, token lifetimes,
quarantine cooldowns measured with ``time.monotonic``) stay on real time: they are about the
network, not about when a person may be notified.
"""

from __future__ import annotations

import time


class Clock:
    """The system clock plus an offset that only tests change."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch, as every policy and queue decision sees them."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (tests: a held delivery's window opens without waiting)."""
        self.offset += seconds

    def reset(self) -> None:
        self.offset = 0.0


#: The process's clock (a module global: the queue, the planner and admission share it).
CLOCK = Clock()


def now() -> float:
    """:meth:`CLOCK.now <Clock.now>`."""
    return CLOCK.now()
