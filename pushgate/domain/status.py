"""The states a publish and a delivery move through.

String enums, so a stored status, a JSON field and a metric label stay the plain words they
always were (``DeliveryStatus.SENT == "sent"``), while the code compares against names that a
type checker knows.
"""

from __future__ import annotations

import enum


class DeliveryStatus(enum.StrEnum):
    """One recipient's record of one publish."""

    #: Planned, no outcome yet.
    PENDING = "pending"
    SENT = "sent"
    #: Refused for good, or given up on (a dead letter when the cause was retryable).
    FAILED = "failed"
    #: The provider said the token is gone; the device is switched off.
    INVALID_TOKEN = "invalid_token"
    #: A retry job holds it.
    RETRYING = "retrying"
    #: The notification's deadline (``expire_at`` or TTL) passed before it could go out.
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    #: Policy holds it until ``release_at`` (a delivery window, quiet hours, a frequency cap):
    #: a dispatch job due then carries it; the rule is its ``error_code``.
    HELD = "held"
    #: Policy stopped it for good (``error_code`` is the reason: ``quiet_hours``, ``preference``,
    #: ``frequency_cap``): not a failure, nothing was sent.
    SUPPRESSED = "suppressed"
    #: Nothing to send to this recipient (``no_payload_for_provider``: the publish gave only
    #: other providers' native payloads; ``no_timezone``: a window publish said ``skip``).
    SKIPPED = "skipped"
    #: A dry run's would-be delivery (``"dry_run": true`` on the publish): planned, policy
    #: applied, rendered, never sent. A policy hold keeps its rule and ``release_at``.
    DRY_RUN = "dry_run"


#: Delivery statuses that end a recipient's story for its publish (a re-run batch skips them).
FINAL: tuple[DeliveryStatus, ...] = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.INVALID_TOKEN,
    DeliveryStatus.EXPIRED,
    DeliveryStatus.CANCELLED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.DRY_RUN,
)
#: Delivery statuses a cancel or a failed publish closes.
OPEN_DELIVERY: tuple[DeliveryStatus, ...] = (
    DeliveryStatus.PENDING,
    DeliveryStatus.RETRYING,
    DeliveryStatus.HELD,
)
#: The statuses whose ``error_code`` is a policy reason (shown as ``reason`` on the API).
POLICY_STATUSES: tuple[DeliveryStatus, ...] = (
    DeliveryStatus.HELD,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.SKIPPED,
)


class PublishStatus(enum.StrEnum):
    #: Admitted with a future ``send_at``: its ``plan`` job waits in the queue until then
    #: (cancellable, re-timeable); nothing planned yet.
    SCHEDULED = "scheduled"
    #: Written by admission with its ``plan`` job; nothing planned yet.
    ACCEPTED = "accepted"
    #: Planning began; batches are being sent.
    DISPATCHING = "dispatching"
    COMPLETED = "completed"
    FAILED = "failed"
    #: Every recipient expired.
    EXPIRED = "expired"
    CANCELLED = "cancelled"


#: Publish statuses after which nothing more is sent.
CLOSED: tuple[PublishStatus, ...] = (
    PublishStatus.COMPLETED,
    PublishStatus.FAILED,
    PublishStatus.EXPIRED,
    PublishStatus.CANCELLED,
)
#: Publish statuses that still plan and send.
OPEN_PUBLISH: tuple[PublishStatus, ...] = (
    PublishStatus.SCHEDULED,
    PublishStatus.ACCEPTED,
    PublishStatus.DISPATCHING,
)

#: The per-provider counters of a publish (``publish_stats`` columns): ``planned`` plus one per
#: status a delivery reaches after planning.
#: Plain strings (not members): they become dict keys and column names.
#: ``held`` is a current count like ``retrying`` (entered when policy holds a recipient, left
#: when its release batch records an outcome); ``suppressed`` and ``skipped`` are final.
COUNTERS: tuple[str, ...] = (
    "planned",
    "sent",
    "failed",
    "invalid_token",
    "retrying",
    "expired",
    "cancelled",
    "suppressed",
    "skipped",
    "held",
    "dry_run",
)
#: Counters whose recipients are done (a publish closes when they add up to ``planned``; a cancel
#: closes the rest itself).
FINAL_COUNTERS: tuple[str, ...] = (
    "sent",
    "failed",
    "invalid_token",
    "expired",
    "suppressed",
    "skipped",
    "dry_run",
)
