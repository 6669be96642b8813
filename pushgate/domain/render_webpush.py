"""Web Push rendering, registered for the provider seam (the mapping itself is in ``render``)."""

from __future__ import annotations

import json
from typing import Any

from pushgate.domain import render
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.rendering import Renderer


def _render(n: Notification, o: ProviderOverrides, _now: float) -> render.WebPushRendered:
    return render.render_webpush(n, o.webpush)


def _preview(r: render.WebPushRendered) -> dict[str, Any]:
    try:
        body: Any = json.loads(r.payload)
    except ValueError:
        body = r.payload.decode(errors="replace")
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


RENDERER = Renderer(
    name="webpush",
    render=_render,
    size=lambda r: len(r.payload),
    limit=lambda _r: render.LIMITS["webpush"],
    preview=_preview,
)
