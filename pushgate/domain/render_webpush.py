"""Web Push rendering, registered for the provider seam (the mapping itself is in ``render``)."""

from __future__ import annotations

import json
from typing import Any

from pushgate.domain import message_ids, render
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.rendering import Renderer


def _render(n: Notification, o: ProviderOverrides, _now: float) -> render.WebPushRendered:
    return render.render_webpush(n, o.webpush)


def _preview(stamped: Any) -> dict[str, Any]:
    r, publish_id = message_ids.for_preview(stamped)
    try:
        body: Any = json.loads(r.payload)
    except ValueError:
        body = r.payload.decode(errors="replace")
    if publish_id is not None and isinstance(body, dict):
        body = {message_ids.KEY: message_ids.id_object(publish_id, message_ids.PREVIEW_DELIVERY_ID), **body}
    return {
        "method": "POST",
        "url": "<subscription endpoint>",
        "headers": {
            **r.headers,
            "Content-Encoding": "aes128gcm",
            "Authorization": "vapid t=<jwt>, k=<public key>",
        },
        "body": body,
        "note": "the body is encrypted per subscription (aes128gcm); shown here as plaintext",
    }


_IDS_BYTES = message_ids.overhead()

RENDERER = Renderer(
    name="webpush",
    render=_render,
    # The plaintext with the longest message ids (the body's first key, docs/receipts.md).
    size=lambda r: len(r.payload) + _IDS_BYTES,
    limit=lambda _r: render.LIMITS["webpush"],
    preview=_preview,
)
