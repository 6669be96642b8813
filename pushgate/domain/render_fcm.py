"""FCM HTTP v1 rendering, registered for the provider seam (the mapping itself is in ``render``)."""

from __future__ import annotations

import json
from typing import Any

from pushgate.domain import render
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.rendering import NotificationError, Renderer


def _render(n: Notification, o: ProviderOverrides, now: float) -> dict[str, Any]:
    return render.render_fcm(n, o.fcm, now=now)


def _preview(rendered: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": "{base_url}/v1/projects/{project_id}/messages:send",
        "headers": {"Authorization": "Bearer <access token>", "Content-Type": "application/json"},
        "body": {"message": {**rendered, "token": "<device token>"}},
    }


def _check(n: Notification) -> None:
    try:
        render.validate_fcm_data(n.data)
    except ValueError as exc:
        raise NotificationError("data", str(exc)) from None


RENDERER = Renderer(
    name="fcm",
    render=_render,
    size=lambda r: len(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode()),
    limit=lambda _r: render.LIMITS["fcm"],
    preview=_preview,
    check=_check,
)
