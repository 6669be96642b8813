"""Webhook rules: the event types, the signature, the retry delays (no I/O).

A receiver verifies ``X-Pushgate-Signature: t=<unix seconds>,v1=<hex>`` by computing
HMAC-SHA256 over ``"<t>.<raw body>"`` with the webhook's secret and comparing in constant
time; ``t`` lets it refuse replays older than it tolerates. The scheme is Stripe's, which many
receivers already have code for.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from enum import StrEnum


class EventType(StrEnum):
    #: A publish closed (completed, failed, expired or cancelled), with its counts.
    PUBLISH_FINISHED = "publish.finished"
    #: Deliveries of one publish failed for good (one event per recorded batch).
    DELIVERY_FAILED = "delivery.failed"
    #: Providers said these tokens are gone: the devices were switched off (clean your tables).
    DEVICE_INVALID_TOKEN = "device.invalid_token"
    #: A device reported a receipt (delivered, opened, dismissed, clicked) new on its delivery.
    RECEIPT = "receipt"


ALL = "*"
EVENT_TYPES: frozenset[str] = frozenset(EventType)


def subscribes(events: str, event_type: str) -> bool:
    """Whether a webhook's stored ``events`` (space-separated, ``*``: all) include the type."""
    names = events.split()
    return ALL in names or event_type in names


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Pushgate-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (the tests and docs/webhooks.md use it as the reference)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def retry_delay(attempts: int, ladder: Sequence[float]) -> float:
    """Seconds before attempt ``attempts + 1`` (the ladder's last step repeats)."""
    return float(ladder[min(attempts - 1, len(ladder) - 1)]) if attempts > 0 else 0.0
