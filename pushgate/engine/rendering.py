"""Render a publish's notification for each provider (shared by admission and dispatch)."""

from __future__ import annotations

from typing import Any

import msgspec

from pushgate.domain import render
from pushgate.domain.notification import Notification, ProviderOverrides


def parse_request(request: dict[str, Any]) -> tuple[Notification, ProviderOverrides]:
    notification = msgspec.convert(request.get("notification") or {}, Notification)
    overrides = msgspec.convert(request.get("providers") or {}, ProviderOverrides)
    return notification, overrides


def render_for(provider: str, notification: Notification, overrides: ProviderOverrides) -> Any:
    """The provider's rendered payload, the input of ``Provider.send_batch``."""
    if provider == "fcm":
        return render.render_fcm(notification, overrides.fcm)
    if provider == "webpush":
        return render.render_webpush(notification, overrides.webpush)
    raise ValueError(f"no renderer for provider {provider!r}")


class RenderCache:
    """Dispatch batches of one publish share one rendering; keep the recent ones."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: dict[tuple[str, str], Any] = {}

    def get(self, publish_id: str, provider: str, request: dict[str, Any]) -> Any:
        key = (publish_id, provider)
        hit = self._items.get(key)
        if hit is None:
            notification, overrides = parse_request(request)
            hit = render_for(provider, notification, overrides)
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = hit
        return hit
