"""FCM HTTP v1 rendering, registered for the provider seam (the mapping itself is in ``render``)."""

from __future__ import annotations

import json
from typing import Any

from pushgate.domain import message_ids, render
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.rendering import NotificationError, Renderer


def _render(n: Notification, o: ProviderOverrides, now: float) -> dict[str, Any]:
    return render.render_fcm(n, o.fcm, now=now)


def _preview(stamped: Any) -> dict[str, Any]:
    rendered, publish_id = message_ids.for_preview(stamped)
    message = dict(rendered)
    if publish_id is not None and isinstance(message.get("data", {}), dict):
        ids = json.dumps(
            message_ids.id_object(publish_id, message_ids.PREVIEW_DELIVERY_ID), separators=(",", ":")
        )
        message["data"] = {message_ids.KEY: ids, **message.get("data", {})}
    return {
        "method": "POST",
        "url": "{base_url}/v1/projects/{project_id}/messages:send",
        "headers": {"Authorization": "Bearer <access token>", "Content-Type": "application/json"},
        "body": {"message": {**message, "token": "<device token>"}},
    }


def _check(n: Notification) -> None:
    try:
        render.validate_fcm_data(n.data)
    except ValueError as exc:
        raise NotificationError("data", str(exc)) from None
    reserved = message_ids.reserved_key_error(n.data)
    if reserved is not None:
        raise NotificationError("data", reserved)


#: The ids as one more ``data`` entry (a JSON string), plus ``"data":{}`` when there was none.
_IDS_BYTES = message_ids.overhead(string=True) + len('"data":{},')


def _size(r: dict[str, Any]) -> int:
    """The message's bytes with the longest message ids (docs/receipts.md) counted."""
    return len(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode()) + _IDS_BYTES


RENDERER = Renderer(
    name="fcm",
    render=_render,
    size=_size,
    limit=lambda _r: render.LIMITS["fcm"],
    preview=_preview,
    check=_check,
)
