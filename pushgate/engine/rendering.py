"""Rendering at dispatch: one rendering per (publish, provider), shared by all its batches."""

from __future__ import annotations

from typing import Any

import msgspec

from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.rendering import render_for
from pushgate.providers import registry


def parse_request(request: dict[str, Any]) -> tuple[Notification, ProviderOverrides]:
    notification = msgspec.convert(request.get("notification") or {}, Notification)
    overrides = msgspec.convert(request.get("providers") or {}, ProviderOverrides)
    return notification, overrides


class RenderCache:
    """Keep the renderings of recently dispatched publishes."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: dict[tuple[str, str], Any] = {}

    def get(self, publish_id: str, provider: str, request: dict[str, Any], created_at: float) -> Any:
        key = (publish_id, provider)
        hit = self._items.get(key)
        if hit is None:
            notification, overrides = parse_request(request)
            hit = render_for(registry.get(provider).renderer, notification, overrides, created_at)
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = hit
        return hit
