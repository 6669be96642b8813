"""gorush's sync mode: wait (bounded) for the publishes of one ``POST /api/push`` to close, then
answer each token that was not sent as a gorush ``failed-push`` log entry.

gorush logs only failures (``notify/notification_fcm.go``: a success is logged to its access
log, never to the answer), so the answer's ``logs`` holds one entry per token whose delivery
record ended in anything but ``sent`` (or ``dry_run``). The records are the native ones
(``GET /v1/publishes/{id}/deliveries``): a raw token's record is found by its recipient id,
computed from the token the caller gave, so the log shows the token as the caller wrote it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pushgate.api.common import normalize_token
from pushgate.api.compat.gorush.schema import PLATFORM_NAMES, PLATFORMS, GorushNotification, LogEntry
from pushgate.api.compat.gorush.translate import tokens_of
from pushgate.api.services import Services
from pushgate.domain.status import CLOSED, DeliveryStatus
from pushgate.store.audience import raw_recipient_id
from pushgate.store.publishes import Publish
from pushgate.store.registrations import token_hash

#: How long a sync ``POST /api/push`` waits for its publishes to close. gorush waits without a
#: bound; a publish still open then is left out of the logs (it goes on, and
#: ``GET /v1/publishes/{id}`` shows it: its id is in the ``X-Pushgate-Publish-Ids`` header).
SYNC_WAIT = 30.0
_POLL = 0.05
_PAGE = 1000
#: Records that say the token got its notification (a dry run's would have).
_NOT_FAILED = frozenset({DeliveryStatus.SENT, DeliveryStatus.DRY_RUN})
FAILED_PUSH = "failed-push"


@dataclass(frozen=True, slots=True)
class Admitted:
    """One notification of the request and the publish it became."""

    item: GorushNotification
    publish: Publish


async def wait_closed(services: Services, admitted: list[Admitted]) -> set[str]:
    """The ids of the publishes closed within :data:`SYNC_WAIT` (one status read per open
    publish per poll; the workers of this process were woken at admission)."""
    open_ids = {a.publish.id for a in admitted if a.publish.status not in CLOSED}
    closed = {a.publish.id for a in admitted} - open_ids
    until = time.monotonic() + SYNC_WAIT
    while open_ids:
        for pid in sorted(open_ids):
            if await services.publishes.status(pid) in CLOSED:
                open_ids.discard(pid)
                closed.add(pid)
        if not open_ids or time.monotonic() >= until:
            break
        await asyncio.sleep(_POLL)
    return closed


def failed_entries(item: GorushNotification, error: str) -> list[LogEntry]:
    """Every token of ``item`` as failed with ``error`` (a notification refused at admission
    after others of the request were admitted: gorush's ``markFailedNotification``)."""
    targets = tokens_of(item) + [t for t in (item.topic, item.condition) if t and item.platform in (2, 3)]
    return [_entry(item, t, error) for t in targets]


async def failure_logs(services: Services, app_id: str, done: Admitted) -> list[LogEntry]:
    """The closed publish's tokens that were not sent, in the order the notification gave them."""
    names = _recipient_names(services, done.item)
    failed: dict[str, str] = {}
    cursor: str | None = None
    while True:
        rows, cursor = await services.publishes.deliveries(
            app_id, done.publish.id, status=None, provider=None, cursor=cursor, limit=_PAGE
        )
        for r in rows:
            if r.status not in _NOT_FAILED:
                failed[r.recipient_id] = r.error_message or r.error_code or str(r.status)
        if cursor is None:
            break
    return [_entry(done.item, token, failed[rid]) for rid, token in names.items() if rid in failed]


def _recipient_names(services: Services, item: GorushNotification) -> dict[str, str]:
    """Recipient id → the token (or topic, condition) as the request wrote it."""
    provider = PLATFORMS[item.platform]
    out: dict[str, str] = {}
    for token in tokens_of(item):
        _, key = normalize_token(provider, token, services.settings)
        out.setdefault(raw_recipient_id(provider, key), token)
    if item.platform in (2, 3):
        for kind, value in (("topic", item.topic), ("condition", item.condition)):
            if value:
                out["nat_" + token_hash(provider, f"{kind}:{value}")[:32]] = value
    return out


def _entry(item: GorushNotification, token: str, error: str) -> LogEntry:
    return LogEntry(
        type=FAILED_PUSH,
        platform=PLATFORM_NAMES[item.platform],
        token=token,
        message=item.message or "",
        error=error,
        notif_id=item.notif_id,
    )
