"""The publish as the store returns it, and the shapes its repositories share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pushgate.store.db import Database


@dataclass(slots=True)
class Publish:
    id: str
    app_id: str
    status: str
    request: dict[str, Any]
    idempotency_key: str | None
    expire_at: float | None
    planning_done: bool
    error_code: str | None
    error_message: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    counts: dict[str, int] = field(default_factory=dict)
    #: A ``scheduled`` publish's start (its plan job's ``run_at``).
    send_at: float | None = None
    by_provider: dict[str, dict[str, int]] = field(default_factory=dict)
    #: ``suppressed``/``skipped`` counts by reason (read with one publish's counts).
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The publish's campaign, labels, client-chosen id and dry-run flag (docs/campaigns.md).
    campaign: str | None = None
    labels: dict[str, str] | None = None
    client_id: str | None = None
    dry_run: bool = False
    #: Failure reasons of its deliveries ``(error_class, code, count)``, read with one
    #: publish's counts from at most ``campaigns.MAX_REASON_ROWS`` failed records; None: not
    #: read (a page of publishes reads none: review finding 6).
    failures: list[tuple[str | None, str | None, int]] | None = field(default_factory=list)
    #: More failed records than were read for ``failures``: the counts are of a sample.
    failures_truncated: bool = False
    #: A dry run's rendered samples: provider → locale → the provider request.
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def public_id(self) -> str:
        """The id the API shows: the client's ``publish_id`` when it chose one."""
        return self.client_id or self.id


@dataclass(frozen=True, slots=True)
class PublishTags:
    """What a publish says about itself rather than what to send (docs/campaigns.md)."""

    campaign: str | None = None
    labels: dict[str, str] | None = None
    #: The client's ``publish_id`` (unique per app; also the idempotency key).
    client_id: str | None = None
    dry_run: bool = False


@dataclass(slots=True)
class DeadLetter:
    publish_id: str
    recipient_id: str
    device_id: str | None
    provider: str
    attempts: int
    error_code: str | None
    error_message: str | None
    updated_at: float
    error_class: str | None = None


def publish_from_row(row: Any) -> Publish:
    return Publish(
        id=row.id,
        app_id=row.app_id,
        status=row.status,
        request=json.loads(row.request),
        idempotency_key=row.idempotency_key,
        expire_at=row.expire_at,
        planning_done=bool(row.planning_done),
        error_code=row.error_code,
        error_message=row.error_message,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        send_at=row.send_at,
        campaign=row.campaign,
        labels=json.loads(row.labels) if row.labels else None,
        client_id=row.client_id,
        dry_run=bool(row.dry_run),
    )


class Repository:
    """What every publish repository holds: the database (its dialect picks the SQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db
