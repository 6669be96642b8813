"""Campaigns, labels, client-chosen publish ids and dry runs at admission, shared by the single and
the batch publish routes (docs/campaigns.md)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from pushgate.api.errors import ApiError, bad_request, not_found
from pushgate.api.schemas import PublishIn
from pushgate.api.schemas_campaigns import ReasonOut
from pushgate.api.services import ServicesDep
from pushgate.domain.status import CLOSED
from pushgate.store.publishes import Publish
from pushgate.store.publishes.client_ids import IdConflict
from pushgate.store.publishes.model import PublishTags
from pushgate.store.publishes.reads import is_server_id

#: ``POST /v1/publish`` with ``dry_run`` waits at most this long for the dry run to finish (the
#: workers of any process record it) before answering 202 instead of 200.
DRY_RUN_WAIT = 5.0
_POLL = 0.05
_LABEL_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def publish_tags(data: PublishIn, send_at: float | None, now: float) -> PublishTags:
    """The publish's tags, checked beyond the schema (400 naming the field)."""
    if data.publish_id is not None and is_server_id(data.publish_id):
        raise bad_request("publish_id: must not start with 'pub_' (the prefix of the server's own ids)")
    for name in data.labels or {}:
        if not _LABEL_NAME.fullmatch(name):
            raise bad_request(f"labels: the name {name!r} is 1-64 letters, digits and _ . : -")
    if data.dry_run and send_at is not None and send_at > now:
        raise bad_request("send_at: a dry run is planned now; leave send_at out (or give a past time)")
    # A dry run's id would be used up by it: the real send with the same id would replay the dry
    # run and send nothing (review finding 10). Dry runs send nothing, so repeating one is harmless.
    if data.dry_run and data.publish_id is not None:
        raise bad_request(
            "publish_id: a dry run takes no publish_id (the real send with it would replay the dry "
            "run); leave it out and read the dry run by the server id it answers"
        )
    if data.dry_run and data.idempotency_key is not None:
        raise bad_request(
            "idempotency_key: a dry run takes no idempotency_key (the real send with it would "
            "replay the dry run); leave it out"
        )
    return PublishTags(
        campaign=data.campaign,
        labels=dict(data.labels) if data.labels else None,
        client_id=data.publish_id,
        dry_run=data.dry_run,
    )


def with_dry_run(request: dict[str, Any], tags: PublishTags) -> dict[str, Any]:
    """The stored request of a dry run says so: the policy loader reads it there (it takes no
    frequency-cap slots and holds nobody)."""
    if tags.dry_run:
        request["dry_run"] = True
    return request


def id_conflict(exc: IdConflict) -> ApiError:
    return bad_request(str(exc))


def tags_out(p: Publish) -> dict[str, Any]:
    """``PublishOut``'s campaign, client id and dry-run fields for ``p``."""
    return {
        "reasons": None if p.failures is None else [ReasonOut(cls, code, n) for cls, code, n in p.failures],
        "reasons_truncated": p.failures_truncated,
        "server_id": p.id if p.client_id else None,
        "campaign": p.campaign,
        "labels": p.labels,
        "dry_run": p.dry_run,
        "samples": (p.samples or None) if p.dry_run else None,
    }


async def server_id(services: ServicesDep, app_id: str, publish_id: str) -> str:
    """The server id of the app's publish named by a server id or a client ``publish_id``
    (404 for an unknown client id; a server id is checked by the route's own read)."""
    found = await services.publishes.resolve(app_id, publish_id)
    if found is None:
        raise not_found("publish", publish_id)
    return found


async def wait_dry_run(services: ServicesDep, pub: Publish) -> Publish | None:
    """The dry run once it is closed, waiting at most :data:`DRY_RUN_WAIT` (None: not yet).

    The workers of this process are woken by the route; those of other processes find its jobs
    on their next poll. Polls the status only (one indexed read), then reads the whole publish.
    """
    until = time.monotonic() + DRY_RUN_WAIT
    while True:
        status = pub.status if pub.status in CLOSED else await services.publishes.status(pub.id)
        if status in CLOSED:
            return await services.publishes.get(pub.app_id, pub.id)
        if time.monotonic() >= until:
            return None
        await asyncio.sleep(_POLL)
