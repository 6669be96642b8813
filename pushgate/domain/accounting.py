"""Outcome accounting: what one chunk of a dispatch batch means for its delivery records.

Pure and typed, so the rules that move counters (the subtle part: a retried delivery that
becomes final leaves ``retrying``; a chunk recorded after a cancel moves recipients out of
``cancelled``) are tested without a database. The recorder (``engine/recorder.py``) writes what
:func:`account` returns, in one transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.retry import RetryDecision, RetryPolicy, decide_retry
from pushgate.domain.status import DeliveryStatus


class Skip(enum.StrEnum):
    """Why a target got no provider request (the value is its record's ``error_code``)."""

    #: The notification's deadline passed first (or would pass during the wait for the provider).
    EXPIRED = "expired"
    #: The publish was cancelled between two chunks of the batch.
    CANCELLED = "cancelled"
    #: Deferred (quarantine, rate limit) past ``retry.max_age_seconds``: failed, a dead letter.
    DEFERRED_TOO_LONG = "deferred_too_long"
    #: The device was deleted (or marked invalid) after planning: failed, not a dead letter.
    DEVICE_REMOVED = "device_removed"
    #: A dry run: recorded, never sent (``engine/dryrun.py``).
    DRY_RUN = "dry_run"


_SKIP_MESSAGES = {
    Skip.DEFERRED_TOO_LONG: (
        "still deferred (provider quarantined or rate limited) after retry.max_age_seconds"
    ),
    Skip.DEVICE_REMOVED: (
        "not sent: the device was deleted or marked invalid after this publish was planned"
    ),
}


@dataclass(frozen=True, slots=True)
class NotAttempted:
    """A target that was not sent: it gets a record but no error class, and moves no breaker."""

    reason: Skip

    @property
    def error_code(self) -> str:
        return self.reason.value

    @property
    def error_message(self) -> str | None:
        return _SKIP_MESSAGES.get(self.reason)


EXPIRED = NotAttempted(Skip.EXPIRED)
CANCELLED = NotAttempted(Skip.CANCELLED)
DEFERRED_TOO_LONG = NotAttempted(Skip.DEFERRED_TOO_LONG)
DEVICE_REMOVED = NotAttempted(Skip.DEVICE_REMOVED)
DRY_RUN = NotAttempted(Skip.DRY_RUN)

#: What happened to one target: a provider's answer (or a local failure classified like one),
#: or no attempt at all.
Attempt = SendResult | NotAttempted

#: Credential failures found before any request was made (nothing configured, or unusable):
#: not dead letters, since a replay could not fix them.
LOCAL_CREDENTIAL_CODES = frozenset({"no_credentials", "credential_invalid"})


@dataclass(slots=True)
class DeliveryUpdate:
    recipient_id: str
    status: str
    attempts: int
    error_code: str | None = None
    error_message: str | None = None
    #: The class of the provider's answer (domain/outcomes.py); None when none was received.
    error_class: str | None = None
    provider_message_id: str | None = None
    sent_at: float | None = None
    #: Failed after exhausting its attempts on retryable errors (a dead letter).
    dead: bool = False


class Recipient(Protocol):
    """What accounting needs of a target (``providers.base.Target`` is one)."""

    @property
    def recipient_id(self) -> str: ...

    @property
    def token(self) -> str: ...


T = TypeVar("T", bound=Recipient)


@dataclass(frozen=True, slots=True)
class Batch:
    """The facts about a dispatch batch that decide its outcomes."""

    provider: str
    attempt: int
    policy: RetryPolicy
    #: The publish's creation time (``retry.max_age_seconds`` counts from it).
    created_at: float
    #: No attempt after this (``expire_at`` or the TTL); None: no deadline.
    deadline: float | None
    #: Its recipients are counted as ``retrying`` already (a retry, or a replayed dead letter).
    was_retrying: bool
    #: Its recipients are counted as ``held`` (a release batch of held deliveries).
    was_held: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    status: DeliveryStatus
    #: A dead letter (failed on a retryable cause, replayable).
    dead: bool = False
    #: When the retry job runs (status ``retrying`` only).
    retry_at: float | None = None


@dataclass(slots=True)
class Accounting(Generic[T]):
    updates: list[DeliveryUpdate] = field(default_factory=list)
    #: Deltas for the publish's counters of this provider (zero entries included).
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("sent", "failed", "invalid_token", "expired", "retrying", "cancelled", "held", "dry_run"), 0
        )
    )
    #: Device ids to switch off → (reason, the token that was refused).
    invalid: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Retry batches by their run time (rounded to the millisecond).
    retries: dict[float, list[T]] = field(default_factory=dict)


def judge(batch: Batch, result: Attempt, *, now: float, cancelled: bool) -> Verdict:
    """The status one target ends this attempt in.

    ``cancelled``: the publish was cancelled while the batch was in flight, so what would have
    been retried stays cancelled.
    """
    if isinstance(result, NotAttempted):
        if result.reason is Skip.EXPIRED:
            return Verdict(DeliveryStatus.EXPIRED)
        if result.reason is Skip.DRY_RUN:
            return Verdict(DeliveryStatus.DRY_RUN)
        if result.reason is Skip.DEFERRED_TOO_LONG:
            return Verdict(DeliveryStatus.FAILED, dead=True)
        if result.reason is Skip.DEVICE_REMOVED:
            # Nothing to replay to; after a cancel it stays counted as cancelled.
            return Verdict(DeliveryStatus.CANCELLED if cancelled else DeliveryStatus.FAILED)
        # Skipped because the publish looked cancelled; cancels are final, so the recording
        # transaction sees it too. Were it not so, the target goes back to the retry ladder.
        return _retryable(batch, Outcome.PROVIDER_TRANSIENT, None, now=now, cancelled=cancelled)
    outcome = result.outcome
    if outcome is Outcome.SENT:
        return Verdict(DeliveryStatus.SENT)
    if outcome is Outcome.DEVICE_TERMINAL:
        return Verdict(DeliveryStatus.INVALID_TOKEN)
    if outcome.retryable:
        return _retryable(batch, outcome, result.retry_after, now=now, cancelled=cancelled)
    # A provider that refused our credential will take the same push once the credential is
    # fixed: keep it replayable (a dead letter). Missing or unusable configuration is not.
    dead = outcome is Outcome.CREDENTIAL and result.error_code not in LOCAL_CREDENTIAL_CODES
    return Verdict(DeliveryStatus.FAILED, dead=dead)


def _retryable(
    batch: Batch, outcome: Outcome, retry_after: float | None, *, now: float, cancelled: bool
) -> Verdict:
    if cancelled:
        return Verdict(DeliveryStatus.CANCELLED)
    decision, run_at = decide_retry(
        batch.policy,
        batch.attempt,
        outcome,
        retry_after,
        now=now,
        created_at=batch.created_at,
        deadline=batch.deadline,
    )
    if decision is RetryDecision.RETRY:
        return Verdict(DeliveryStatus.RETRYING, retry_at=run_at)
    if decision is RetryDecision.EXPIRED:
        return Verdict(DeliveryStatus.EXPIRED)
    return Verdict(DeliveryStatus.FAILED, dead=True)


def count(counts: dict[str, int], status: DeliveryStatus, *, batch: Batch, cancelled: bool) -> None:
    """Move the counters for one target that ended in ``status``.

    After a cancel its recipients were counted ``cancelled`` by the cancel; a target really
    sent (or failed) moves from there. Otherwise a delivery enters ``retrying`` once, on its
    first deferral, and leaves it when it becomes final; a held recipient leaves ``held`` with
    its release batch's outcome (a cancel already moved it to ``cancelled``).
    """
    if cancelled:
        if status is not DeliveryStatus.CANCELLED:
            counts["cancelled"] -= 1
            counts[status] += 1
    elif status is DeliveryStatus.RETRYING:
        if not batch.was_retrying:
            counts["retrying"] += 1
        if batch.was_held:
            counts["held"] -= 1
    else:
        counts[status] += 1
        if batch.was_retrying:
            counts["retrying"] -= 1
        if batch.was_held:
            counts["held"] -= 1


def account(
    batch: Batch, targets: Sequence[T], results: Sequence[Attempt], *, now: float, cancelled: bool
) -> Accounting[T]:
    """Delivery updates, counter deltas, devices to invalidate and retry batches for one chunk.

    ``results`` pairs with ``targets``; targets past its end were not sent (the publish was
    cancelled mid-batch) and count as :data:`CANCELLED`.
    """
    out: Accounting[T] = Accounting()
    for n, target in enumerate(targets):
        res = results[n] if n < len(results) else CANCELLED
        verdict = judge(batch, res, now=now, cancelled=cancelled)
        status = verdict.status
        if status is DeliveryStatus.INVALID_TOKEN and target.recipient_id.startswith("dev_"):
            reason = f"{batch.provider}: {res.error_code or 'invalid token'}"
            out.invalid[target.recipient_id] = (reason, target.token)
        if verdict.retry_at is not None:
            out.retries.setdefault(round(verdict.retry_at, 3), []).append(target)
        count(out.counts, status, batch=batch, cancelled=cancelled)
        sent = status is DeliveryStatus.SENT
        answer = res if isinstance(res, SendResult) else None
        out.updates.append(
            DeliveryUpdate(
                recipient_id=target.recipient_id,
                status=status.value,
                attempts=batch.attempt,
                error_code=None if sent else res.error_code,
                error_message=None if sent else res.error_message,
                error_class=answer.outcome.value if answer is not None else None,
                provider_message_id=answer.provider_message_id if answer is not None else None,
                sent_at=now if sent else None,
                dead=verdict.dead,
            )
        )
    return out
