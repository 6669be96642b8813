"""Fault injection: make chosen tokens fail the way the real provider fails.

A fault selects tokens (an explicit list, a deterministic hash-based fraction, or all) and
either answers with a provider error, adds latency, or both. For the services whose endpoint a
device names (Web Push, WNS) a fault can instead answer the way a hostile server would
(``hostile``): a body of 100,000 nested ``[`` (``deep_json``), or one that never ends
(``endless``, streamed; the fault counts the bytes the lab managed to write before the client
stopped reading). `times` counts down separately
for each token it hits, so `tokens=[a, b], times=1` fails `a` once and `b` once; the fault
then lets those tokens through. Faults are checked only after a request has passed the
protocol checks, so a faulted answer is always one a correct sender could have received.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response
from litestar.response import Stream

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
HostileKind = Literal["deep_json", "endless"]
#: Nesting of a ``deep_json`` answer: deeper than any JSON decoder's recursion limit.
DEEP_JSON_LEVELS = 100_000
ENDLESS_CHUNK = 64 * 1024


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
    #: Answer like a hostile server instead (Web Push, WNS): see the module docstring.
    hostile: HostileKind | None = None
    #: The HTTP status of a hostile answer.
    status: Annotated[int, msgspec.Meta(ge=200, le=599)] = 500
    #: How long an ``endless`` body is (default 300 MB), in bytes.
    body_bytes: Annotated[int, msgspec.Meta(ge=1)] = 300 * 1024 * 1024


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
    #: Bytes of hostile bodies the lab handed to its server (what a client could have read).
    written: int = 0

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
        body["written"] = self.written
        return body


@dataclass(slots=True)
class Verdict:
    """What the faults decided for one request: extra latency and, maybe, an error."""

    latency_ms: int = 0
    error: ErrorKind | None = None
    retry_after: int | None = None
    #: The fault whose hostile answer replaces the provider's (see :func:`hostile_response`).
    hostile: Fault | None = None


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
            failing = fault.spec.error is not None or fault.spec.hostile is not None
            if failing and (verdict.error is not None or verdict.hostile is not None):
                continue  # an earlier fault already fails it; don't spend this one's uses
            if not fault.take(aliases[0]):
                continue
            if fault.spec.hostile is not None:
                verdict.hostile = fault
                fault.hits.setdefault(aliases[0], []).append(now)
            verdict.latency_ms = max(verdict.latency_ms, fault.spec.latency_ms or 0)
            if fault.spec.error is not None:
                verdict.error = fault.spec.error
                verdict.retry_after = fault.spec.retry_after
                fault.hits.setdefault(aliases[0], []).append(now)
        return verdict


def hostile_response(fault: Fault) -> Response[bytes] | Stream:
    """A hostile server's answer: ``deep_json`` in one body, ``endless`` streamed in 64 KiB
    chunks until ``body_bytes`` or until the client stops reading (its disconnect ends the
    stream, so ``fault.written`` says how far a capped reader let it get)."""
    spec = fault.spec
    if spec.hostile == "deep_json":
        body = b"[" * DEEP_JSON_LEVELS
        fault.written += len(body)
        return Response(content=body, status_code=spec.status, media_type="application/json")

    async def chunks() -> AsyncIterator[bytes]:
        chunk = b"x" * ENDLESS_CHUNK
        left = spec.body_bytes
        while left > 0:
            piece = chunk[: min(left, ENDLESS_CHUNK)]
            fault.written += len(piece)
            left -= len(piece)
            yield piece
            # Let the server notice a disconnect: after one, uvicorn's send drops the body
            # without awaiting anything, and this loop would count bytes nobody could read.
            await asyncio.sleep(0)

    return Stream(chunks(), status_code=spec.status, media_type="application/json")
