"""Request throttles of the API's front door: wrong keys per client address, requests per key.

Both are counters in this process's memory (no database round trip on a request's path), so
with several ``serve`` processes each holds its own counts: the limits are per process.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from pushgate.config import AuthSettings

#: Addresses tracked at most; past it, entries whose window and block are over are dropped
#: (and if every one is still live, all are: memory stays bounded under a spread-out attack).
MAX_TRACKED = 50_000


@lru_cache(maxsize=4096)
def client_key(host: str | None) -> str:
    """The address a failure counts against: IPv4 as is, IPv6 by its /64 (one host can use a
    whole /64, so counting single IPv6 addresses would give it billions of fresh starts).
    Cached: parsing the address was a fifth of authenticating a request."""
    if not host:
        return "-"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


@dataclass(slots=True)
class _Address:
    window_start: float
    #: Wrong keys within the window that began at ``window_start``.
    failures: int = 0
    #: Keys from this address being looked up right now (not known right or wrong yet).
    pending: int = 0
    blocked_until: float = 0.0


class FailureThrottle:
    """After ``max_failures`` wrong keys within ``window`` seconds an address is blocked for
    ``block`` seconds: every request it makes is refused before its key is looked at (a correct
    key answered differently would tell a guesser it had won).

    A lookup is reserved before it starts (:meth:`reserve`) and counted when it ends
    (:meth:`release`): wrong keys still being looked up count against the limit, so a guesser
    cannot get thousands of guesses checked by sending them all at once before the first
    failure is counted.
    """

    def __init__(self, settings: AuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = settings.max_failures
        self.window = settings.failure_window_seconds
        self.block = settings.block_seconds
        self.clock = clock
        self._seen: dict[str, _Address] = {}

    def retry_after(self, address: str) -> float:
        """Seconds the address is still blocked for (0: not blocked)."""
        entry = self._seen.get(address)
        return max(0.0, entry.blocked_until - self.clock()) if entry is not None else 0.0

    def reserve(self, address: str) -> bool:
        """May a key from ``address`` be looked up now? (Then :meth:`release` must follow.)"""
        if self.max_failures == 0:
            return True
        entry = self._entry(address)
        if entry.blocked_until > self.clock() or entry.failures + entry.pending >= self.max_failures:
            return False
        entry.pending += 1
        return True

    def release(self, address: str, *, failed: bool) -> None:
        """A lookup reserved for ``address`` ended; ``failed``: the key was wrong."""
        if self.max_failures == 0:
            return
        entry = self._entry(address)
        entry.pending = max(0, entry.pending - 1)
        if failed:
            entry.failures += 1
            if entry.failures >= self.max_failures:
                entry.blocked_until = self.clock() + self.block
                entry.window_start, entry.failures = self.clock(), 0

    def _entry(self, address: str) -> _Address:
        now = self.clock()
        entry = self._seen.get(address)
        if entry is None:
            if len(self._seen) >= MAX_TRACKED:
                self._prune(now)
            entry = self._seen[address] = _Address(window_start=now)
        elif now - entry.window_start >= self.window:
            entry.window_start, entry.failures = now, 0
        return entry

    def _prune(self, now: float) -> None:
        live = {
            a: e
            for a, e in self._seen.items()
            if now - e.window_start < self.window or e.blocked_until > now or e.pending
        }
        self._seen = live if len(live) < MAX_TRACKED else {}


class KeyRateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts of one second's worth.

    Keys include device tokens (one bucket per device), so the table is bounded: past
    ``max_buckets`` the refilled ones are dropped (a full bucket is the same as none), then, if
    that is not enough, the least recently refilled.
    """

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000
    ) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}

    def _prune(self, now: float) -> None:
        full = [
            k
            for k, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.capacity
        ]
        for k in full:
            del self._buckets[k]
        excess = len(self._buckets) - self.max_buckets // 2
        if excess > 0:
            # dicts keep insertion order, and take() re-inserts a key it updates: oldest first.
            for k in list(self._buckets)[:excess]:
                del self._buckets[k]

    def take(self, key_id: str) -> float:
        """Spend one request of ``key_id``: 0 when allowed, else the seconds until it would be."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self._buckets.pop(key_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_buckets:
            self._prune(now)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key_id] = (tokens - 1.0, now)
        return 0.0


def retry_after_header(seconds: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds, at least 1 (a client that retries at 0 just spins)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
