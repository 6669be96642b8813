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


#: Delivery statuses that end a recipient's story for its publish (a re-run batch skips them).
FINAL: tuple[DeliveryStatus, ...] = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.INVALID_TOKEN,
    DeliveryStatus.EXPIRED,
    DeliveryStatus.CANCELLED,
)
#: Delivery statuses a cancel or a failed publish closes.
OPEN_DELIVERY: tuple[DeliveryStatus, ...] = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


class PublishStatus(enum.StrEnum):
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
OPEN_PUBLISH: tuple[PublishStatus, ...] = (PublishStatus.ACCEPTED, PublishStatus.DISPATCHING)

#: The per-provider counters of a publish (``publish_stats`` columns): ``planned`` plus one per
#: status a delivery reaches after planning.
#: Plain strings (not members): they become dict keys and column names.
COUNTERS: tuple[str, ...] = ("planned", "sent", "failed", "invalid_token", "retrying", "expired", "cancelled")
