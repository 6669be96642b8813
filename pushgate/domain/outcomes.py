"""The classes every provider answer is sorted into.

The engine reacts to a class, never to a provider's own code, so adding a provider never
touches the retry or pruning logic: the provider module only has to classify.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    SENT = "sent"
    #: The token is gone for good (unregistered, malformed, other sender): mark the device invalid.
    DEVICE_TERMINAL = "device_terminal"
    #: Worth another attempt later (429, 5xx, timeouts, connection resets).
    RETRYABLE = "retryable"
    #: Our credentials are wrong or missing: fail the delivery, never touch the device.
    CREDENTIAL = "credential"
    #: The request itself is wrong (too large, bad field): fail, never retry.
    PAYLOAD = "payload"


@dataclass(slots=True)
class SendResult:
    """What one provider request meant for one recipient."""

    outcome: Outcome
    provider_message_id: str | None = None
    #: The provider's own code (e.g. ``UNREGISTERED``, ``http_410``), kept for the delivery record.
    error_code: str | None = None
    error_message: str | None = None
    #: Seconds the provider asked us to wait (``Retry-After``), or a floor the provider's rules impose.
    retry_after: float | None = None
