"""The circuit breaker of one (app, provider) pair: pure rules, no I/O.

``closed`` sends. A streak of ``provider_transient`` answers, or any ``credential`` answer,
turns it ``open`` for a cooldown: work for the pair is deferred (not attempted, so no attempt is
burned). When the cooldown ends, one sender becomes the ``half_open`` probe and sends a single
notification; a healthy answer closes the breaker, another failure re-opens it for twice as
long (up to ``max_cooldown``).

For the providers whose endpoint each device names (Web Push, WNS) the same breaker is kept per
push-service origin too (:func:`by_scope`): a 401/403/5xx or a network error from one origin
parks that origin's devices only, and the pair's breaker keeps what speaks for the whole app
(the OAuth token exchange).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pushgate.domain.accounting import Recipient
from pushgate.domain.outcomes import Outcome, SendResult

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

#: Answers that show the provider itself is working: they end a failure streak.
_HEALTHY = frozenset(
    {Outcome.SENT, Outcome.DEVICE_TERMINAL, Outcome.DEVICE_TRANSIENT, Outcome.QUOTA, Outcome.PAYLOAD}
)


#: Codes that speak for the app's account with the provider, whichever origin a target names.
PROVIDER_WIDE_CODES = frozenset({"oauth_failed"})
#: What the pair's breaker sees of an answer that came back from a push-service origin: the
#: provider-wide part (credentials, the token exchange) worked.
_ANSWERED = SendResult(Outcome.SENT)


def by_scope(
    origins: Sequence[str | None], results: Sequence[SendResult]
) -> tuple[list[SendResult], dict[str, list[SendResult]]]:
    """Split a chunk's answers between the pair's breaker and each origin's.

    ``origins[i]`` is the origin ``results[i]`` came from (None: no origin, e.g. a token that
    does not parse). An origin's own failures go to that origin only; the pair sees them as
    answered, so one hostile push service can neither open nor prolong the app's breaker.
    """
    pair: list[SendResult] = []
    per: dict[str, list[SendResult]] = {}
    for origin, r in zip(origins, results, strict=True):
        if origin is None or r.error_code in PROVIDER_WIDE_CODES:
            pair.append(r)
            continue
        per.setdefault(origin, []).append(r)
        pair.append(r if r.outcome in _HEALTHY else _ANSWERED)
    for origin, answers in per.items():
        if any(r.outcome is Outcome.SENT for r in answers):
            # The origin accepted our key for others in the same chunk: a refusal beside that
            # is about one subscription (e.g. made with another application server key), not
            # the origin; it must not park the origin's other devices.
            per[origin] = [r for r in answers if r.outcome is not Outcome.CREDENTIAL]
    return pair, per


@dataclass(frozen=True, slots=True)
class BreakerRules:
    failure_threshold: int = 5
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    credential_cooldown: float = 60.0
    probe_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Breaker:
    state: str = CLOSED
    failures: int = 0
    cooldown: float = 0.0
    open_until: float | None = None
    probe_until: float | None = None
    opened_at: float | None = None
    reason_class: str | None = None
    reason_code: str | None = None
    reason_message: str | None = None
    #: Origin breakers only: the recipient whose answer opened (or re-opened) it, so the probe
    #: goes to another of the origin's targets when there is one.
    failed_recipient: str | None = None


@dataclass(frozen=True, slots=True)
class Gate:
    """What a sender may do now: send normally, send one probe, or wait until ``defer_until``."""

    send: bool
    probe: bool = False
    defer_until: float | None = None


def gate(b: Breaker, now: float) -> Gate:
    """Closed sends; open waits for its cooldown; a due breaker asks for a probe (which the
    caller must win atomically, see ``ProviderHealthStore.take_probe``)."""
    if b.state == CLOSED:
        return Gate(send=True)
    if b.state == OPEN:
        if b.open_until is not None and now < b.open_until:
            return Gate(send=False, defer_until=b.open_until)
        return Gate(send=False, probe=True)
    # half_open: someone is probing. Wait for its verdict (closing the breaker wakes deferred
    # work at once), or take over a probe that went silent.
    if b.probe_until is not None and now < b.probe_until:
        return Gate(send=False, defer_until=b.probe_until)
    return Gate(send=False, probe=True)


def observe(
    b: Breaker, results: Iterable[SendResult], rules: BreakerRules, now: float, *, probing: bool
) -> Breaker:
    """The breaker after a batch of answers (in the order they were given)."""
    failures = b.failures
    credential: SendResult | None = None
    last_failure: SendResult | None = None
    healthy = False
    for r in results:
        if r.outcome is Outcome.PROVIDER_TRANSIENT:
            failures += 1
            last_failure = r
        elif r.outcome is Outcome.CREDENTIAL:
            credential = credential or r
        elif r.outcome in _HEALTHY:
            failures = 0
            healthy = True
    if credential is not None and (probing or b.state == CLOSED):
        cooldown = rules.credential_cooldown
        if probing:
            cooldown = min(max(b.cooldown, cooldown) * 2, max(rules.max_cooldown, cooldown))
        return _open(b, now, cooldown, credential, failures)
    if b.state != CLOSED and not probing:
        # Answers to requests that were already in flight when the breaker opened: they do not
        # move the cooldown (only the probe does).
        return replace(b, failures=failures)
    if probing:
        if healthy and last_failure is None:
            return Breaker()
        if last_failure is not None:
            cooldown = min(max(b.cooldown, rules.cooldown) * 2, rules.max_cooldown)
            return _open(b, now, cooldown, last_failure, failures)
        return replace(b, failures=failures)
    if (
        b.state == CLOSED
        and rules.failure_threshold > 0
        and failures >= rules.failure_threshold
        and last_failure is not None
    ):
        return _open(b, now, rules.cooldown, last_failure, failures)
    return replace(b, failures=failures)


def _open(b: Breaker, now: float, cooldown: float, why: SendResult, failures: int) -> Breaker:
    return Breaker(
        state=OPEN,
        failures=failures,
        cooldown=cooldown,
        open_until=now + cooldown,
        probe_until=None,
        opened_at=b.opened_at if b.state != CLOSED and b.opened_at else now,
        reason_class=why.outcome.value,
        reason_code=why.error_code,
        reason_message=(why.error_message or "")[:500] or None,
    )


def failed_by_origin(
    targets: Sequence[Recipient], results: Sequence[object], origins: Sequence[str | None]
) -> dict[str, str]:
    """Per origin, a recipient whose answer was a failure that can open its breaker."""
    out: dict[str, str] = {}
    for target, result, origin in zip(targets, results, origins, strict=False):
        if origin is not None and isinstance(result, SendResult) and result.outcome in _OPENS:
            out[origin] = target.recipient_id
    return out


_OPENS = frozenset({Outcome.CREDENTIAL, Outcome.PROVIDER_TRANSIENT})
