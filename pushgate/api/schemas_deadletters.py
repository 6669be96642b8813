"""Request and response bodies of the dead-letter routes (``api/deadletters.py``)."""

from __future__ import annotations

import msgspec

from pushgate.api.schemas import Strict


class DeadLetterOut(msgspec.Struct):
    publish_id: str
    recipient_id: str
    device_id: str | None
    provider: str
    attempts: int
    error_code: str | None
    error_message: str | None
    error_class: str | None
    failed_at: str


class DeadLetterPage(msgspec.Struct):
    items: list[DeadLetterOut]
    next_cursor: str | None


class DeadLetterKey(Strict):
    publish_id: str
    recipient_id: str


class DeadLetterFilter(Strict):
    provider: str | None = None
    publish_id: str | None = None


class ReplayIn(Strict):
    #: Replay these dead letters (at most 1000) …
    ids: list[DeadLetterKey] | None = None
    #: … or every dead letter matching the filter (``{}``: all of the app's).
    filter: DeadLetterFilter | None = None


class ReplayOut(msgspec.Struct):
    #: Dead letters put back in the queue.
    replayed: int
    #: Matched but not replayable: the device is no longer active or its token is unknown.
    skipped: int
