"""The classes every provider answer is sorted into.

The engine reacts to a class, never to a provider's own code, so adding a provider never
touches the retry, quarantine or pruning logic: the provider module only has to classify. The
class is also the ``error_class`` label on delivery records and on metrics.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    SENT = "sent"
    #: The token is gone for good (unregistered, malformed, other sender): mark the device invalid.
    DEVICE_TERMINAL = "device_terminal"
    #: This one device cannot take it right now (APNs TooManyRequests for a token): retry that
    #: token later; says nothing about the provider's health.
    DEVICE_TRANSIENT = "device_transient"
    #: The provider is unwell (5xx, UNAVAILABLE, timeouts, connection resets): retry with backoff;
    #: a streak of these quarantines the (app, provider) pair.
    PROVIDER_TRANSIENT = "provider_transient"
    #: We are over a rate or quota (429, QUOTA_EXCEEDED, WNS 406): retry after the wait asked for.
    QUOTA = "quota"
    #: Our credentials are wrong or missing: never touch the device; quarantines the pair.
    CREDENTIAL = "credential"
    #: The request itself is wrong (too large, bad field): fail, never retry.
    PAYLOAD = "payload"

    @property
    def retryable(self) -> bool:
        """Whether another attempt later can succeed (the retry ladder applies)."""
        return self in _RETRYABLE


_RETRYABLE = frozenset({Outcome.DEVICE_TRANSIENT, Outcome.PROVIDER_TRANSIENT, Outcome.QUOTA})

#: Every class, in the order reports list them.
ERROR_CLASSES: tuple[str, ...] = tuple(o.value for o in Outcome)


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
