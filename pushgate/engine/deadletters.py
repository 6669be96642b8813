"""Replaying dead letters: rebuild each recipient's target and put it back in the queue.

A delivery record holds no token, so the target comes from where the planner found it: the
device (still active) for registered recipients, the publish's own request for raw tokens
and native audiences.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pushgate.providers.base import Target
from pushgate.store.audience import raw_recipient_id
from pushgate.store.devices import token_hash
from pushgate.store.publishes import PublishStore

#: Dead letters one replay request moves at most (a filter matching more is replayed in part).
MAX_REPLAY = 10_000


def _request_targets(request: dict[str, Any]) -> dict[str, str]:
    """Recipient id → token for the raw tokens and native audiences a publish names."""
    out: dict[str, str] = {}
    for r in request.get("recipients", []):
        if r.get("type") == "token":
            out[raw_recipient_id(r["provider"], r["token_key"])] = r["token"]
        elif r.get("type") == "native":
            out["nat_" + token_hash(r["provider"], r["token"])[:32]] = r["token"]
    return out


async def replay(
    publishes: PublishStore,
    app_id: str,
    *,
    keys: Sequence[tuple[str, str]] | None,
    provider: str | None,
    publish_id: str | None,
    batch_size: int,
) -> tuple[int, int]:
    """Re-enqueue dead letters as attempt 1; returns ``(replayed, skipped)``."""
    rows = await publishes.dead_for_replay(
        app_id, keys=keys, provider=provider, publish_id=publish_id, limit=MAX_REPLAY
    )
    groups: dict[tuple[str, str], list[list[str]]] = {}
    raw: dict[str, dict[str, str]] = {}
    skipped = 0
    for r in rows:
        if r.device_id is not None:
            if r.device_status != "active" or r.token is None:
                skipped += 1
                continue
            target = Target(r.recipient_id, r.token, r.environment).row()
        else:
            if r.publish_id not in raw:
                raw[r.publish_id] = _request_targets(json.loads(r.request))
            token = raw[r.publish_id].get(r.recipient_id)
            if token is None:
                skipped += 1
                continue
            target = [r.recipient_id, token]
        groups.setdefault((r.publish_id, r.provider), []).append(target)
    replayed = 0
    for (pub_id, prov), targets in groups.items():
        n = await publishes.requeue_dead(app_id, pub_id, prov, targets, batch_size)
        replayed += n
        skipped += len(targets) - n
    return replayed, skipped
