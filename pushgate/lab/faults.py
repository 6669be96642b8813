"""Fault injection: make chosen tokens fail the way the real provider fails.

A fault selects tokens (an explicit list, a deterministic hash-based fraction, or all) and
either answers with a provider error, adds latency, or both. `times` counts down separately
for each token it hits, so `tokens=[a, b], times=1` fails `a` once and `b` once; the fault
then lets those tokens through. Faults are checked only after a request has passed the
protocol checks, so a faulted answer is always one a correct sender could have received.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

ErrorKind = Literal[
    "unregistered",
    "invalid",
    "sender_mismatch",
    "topic_mismatch",
    "quota",
    "429",
    "500",
    "503",
    "auth",
    "too_large",
    "expired_token",
]
LabProvider = Literal["fcm", "webpush", "apns", "hms", "wns", "mipush"]


class FaultSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The `POST /faults` body."""

    provider: LabProvider
    tokens: list[str] | None = None
    fraction: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    error: ErrorKind | None = None
    retry_after: Annotated[int, msgspec.Meta(ge=0)] | None = None
    times: Annotated[int, msgspec.Meta(ge=1)] | None = None
    latency_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    #: The fault lapses this many seconds after it was installed (an outage of known length).
    for_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None


def in_fraction(token: str, fraction: float) -> bool:
    """Whether `token` falls inside `fraction`: stable across requests, faults and restarts."""
    digest = hashlib.sha256(token.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(slots=True)
class Fault:
    """An installed fault and its per-token remaining counts."""

    id: str
    spec: FaultSpec
    remaining: dict[str, int] = field(default_factory=dict)
    installed_at: float = field(default_factory=lambda: time.time())
    #: When (UNIX time) each token was failed by this fault: lets tests check retry timing.
    hits: dict[str, list[float]] = field(default_factory=dict)

    def active(self, now: float) -> bool:
        return self.spec.for_seconds is None or now < self.installed_at + self.spec.for_seconds

    def selects(self, aliases: tuple[str, ...]) -> bool:
        """`aliases[0]` is the canonical token (what the ledger calls it); any alias may be listed."""
        if self.spec.tokens is not None and not any(a in self.spec.tokens for a in aliases):
            return False
        return self.spec.fraction is None or in_fraction(aliases[0], self.spec.fraction)

    def take(self, key: str) -> bool:
        """Consume one use for `key`; False when it is used up."""
        if self.spec.times is None:
            return True
        left = self.remaining.get(key, self.spec.times)
        if left <= 0:
            return False
        self.remaining[key] = left - 1
        return True

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, **msgspec.structs.asdict(self.spec)}
        body["remaining"] = dict(self.remaining)
        body["hits"] = {k: list(v) for k, v in self.hits.items()}
        body["active"] = self.active(time.time())
        return body


@dataclass(slots=True)
class Verdict:
    """What the faults decided for one request: extra latency and, maybe, an error."""

    latency_ms: int = 0
    error: ErrorKind | None = None
    retry_after: int | None = None


@dataclass(slots=True)
class FaultBook:
    """All installed faults, checked in installation order."""

    faults: list[Fault] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(id=f"f{next(self._ids)}", spec=spec)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def list(self) -> list[dict[str, Any]]:
        return [f.describe() for f in self.faults]

    def judge(self, provider: str, aliases: tuple[str, ...]) -> Verdict:
        """Apply every matching fault: latencies take the maximum, the first error wins.

        The canonical alias (`aliases[0]`) keys the per-token countdown, so listing a Web
        Push subscription by URL or by id counts the same.
        """
        verdict = Verdict()
        now = time.time()
        for fault in self.faults:
            if fault.spec.provider != provider or not fault.active(now) or not fault.selects(aliases):
                continue
            if fault.spec.error is not None and verdict.error is not None:
                continue  # an earlier fault already fails it; don't spend this one's uses
            if not fault.take(aliases[0]):
                continue
            verdict.latency_ms = max(verdict.latency_ms, fault.spec.latency_ms or 0)
            if fault.spec.error is not None:
                verdict.error = fault.spec.error
                verdict.retry_after = fault.spec.retry_after
                fault.hits.setdefault(aliases[0], []).append(now)
        return verdict
