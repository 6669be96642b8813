"""What a queued job carries: one typed payload Struct per job kind.

The payload is stored as JSON in ``jobs.payload``; the field names are part of the storage
format (jobs already in a database must still run after an upgrade), so a field is never
renamed, only added with a default. Unknown fields are ignored on decode, so a job written by a
newer version is read by an older one as far as it understands it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import ClassVar

import msgspec


class JobKind(enum.StrEnum):
    #: Resolve a publish's recipients into delivery records and dispatch jobs, page by page.
    PLAN = "plan"
    #: Send one batch of targets through one provider and record their outcomes.
    DISPATCH = "dispatch"


class PlanStats(msgspec.Struct):
    """Running totals of a plan job (they decide how an empty or uncredentialed publish ends)."""

    #: Targets put into dispatch jobs.
    dispatched: int = 0
    #: Recipients whose provider has no credentials for the app.
    no_credentials: int = 0
    #: Recipients planned (each counted once).
    planned: int = 0


class RealtimePass(msgspec.Struct, omit_defaults=True):
    """Where a plan job of a publish with ``realtime`` on stands (docs/realtime.md, "Realtime as
    a delivery path"): its sessions are reached once, before any device is planned."""

    #: 1 (``first``): the sessions were reached; a first pass plans the devices of every user
    #: but ``users``. 2: the pass that plans the rest (``also``: everything; ``first``: the users
    #: who acked are ``skipped``, ``realtime_acked``).
    stage: int = 1
    #: ``first``: the users a session of whom the notification reached (their devices wait for
    #: the second pass, ``ack_timeout`` after ``at``).
    users: list[str] = msgspec.field(default_factory=list)
    #: When the sessions were reached (epoch seconds).
    at: float = 0.0


class PlanPayload(msgspec.Struct):
    """A plan job's cursor: saved with each committed page, so a re-claim resumes there."""

    KIND: ClassVar[JobKind] = JobKind.PLAN

    #: Index of the publish's recipient entry being planned.
    i: int = 0
    #: Keyset cursor inside that entry (channels and users are paged); None: its start.
    cursor: str | None = None
    stats: PlanStats = msgspec.field(default_factory=PlanStats)
    #: None: the publish's sessions are not reached yet (or its ``realtime`` is off).
    realtime: RealtimePass | None = None


class DispatchPayload(msgspec.Struct, omit_defaults=True):
    """One batch of targets for one provider.

    ``targets`` are ``Target.row()`` lists (recipient id, token[, environment]): the batch
    carries its tokens, so dispatch reads nothing of the device registry.
    """

    KIND: ClassVar[JobKind] = JobKind.DISPATCH

    provider: str
    #: 1 for a first send (and a replay), n + 1 for the retry of attempt n.
    attempt: int
    targets: list[list[str]]
    #: A replayed dead letter: attempt 1, but its recipients are counted as retrying already.
    replay: bool = False
    #: A release batch: policy held its recipients (status ``held``, counted in ``held``) until
    #: this job's ``run_at``; their outcome moves them out of that counter.
    held: bool = False
    #: When the recipients became due (a release batch's release time; a retry carries its
    #: batch's): the retry ladder's ``max_age_seconds`` counts from here, not from admission.
    since: float | None = None

    def due_since(self, created_at: float, send_at: float | None) -> float:
        """When this batch's notification was due: the retry age counts from it."""
        return max(created_at, send_at or 0.0, self.since or 0.0)

    @property
    def was_retrying(self) -> bool:
        """Whether the batch's recipients already count in the ``retrying`` counter."""
        return self.attempt > 1 or self.replay


#: Every payload a job can carry.
Payload = PlanPayload | DispatchPayload

#: A dispatch job of at most this many targets (a publish to a user or a few devices, planned
#: at admission) is "small": it is claimed, sent and recorded together with others of its app
#: and provider. A fan-out's batches are not grouped: each is its own chunk, whose answers
#: may quarantine the pair before the next goes out.
GROUPABLE_TARGETS = 20


def group_key(payload: Payload) -> str | None:
    """The group a small publish's job is claimed with (its provider), or None when it is too
    big to be claimed with others."""
    if isinstance(payload, DispatchPayload) and len(payload.targets) <= GROUPABLE_TARGETS:
        return payload.provider
    return None


PAYLOAD_TYPES: dict[str, type[PlanPayload] | type[DispatchPayload]] = {
    JobKind.PLAN: PlanPayload,
    JobKind.DISPATCH: DispatchPayload,
}


class Unreadable(msgspec.Struct):
    """The payload of a row whose kind is unknown or whose JSON does not decode (the worker
    drops such a job with an error log; it would fail the same way on every claim)."""

    error: str


_encoder = msgspec.json.Encoder()


def encode_payload(payload: Payload) -> str:
    return _encoder.encode(payload).decode()


def decode_payload(kind: str, raw: str | bytes) -> Payload | Unreadable:
    cls = PAYLOAD_TYPES.get(kind)
    if cls is None:
        return Unreadable(f"unknown job kind {kind!r}")
    try:
        return msgspec.json.decode(raw, type=cls)
    except msgspec.ValidationError as exc:
        return Unreadable(f"{kind} payload: {exc}")
    except msgspec.DecodeError as exc:
        return Unreadable(f"{kind} payload is not JSON: {exc}")


def dispatch_batches(
    provider: str,
    targets: Sequence[list[str]],
    *,
    attempt: int = 1,
    size: int | None = None,
    replay: bool = False,
    held: bool = False,
    since: float | None = None,
) -> list[DispatchPayload]:
    """``targets`` cut into dispatch payloads of at most ``size`` (None: one payload)."""
    step = size or len(targets) or 1
    return [
        DispatchPayload(provider, attempt, list(targets[k : k + step]), replay, held, since)
        for k in range(0, len(targets), step)
    ]
