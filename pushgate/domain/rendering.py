"""How each provider turns the unified notification into its own request (the seam every
provider plugs into).

A provider's rendering lives in ``pushgate/domain/render_<provider>.py`` and exports
``RENDERER``. Rendering is pure, so admission can size-check and ``/v1/publish/preview`` can
show the exact request without any I/O, and the dispatcher renders once per publish.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from pushgate.domain.notification import Notification, ProviderOverrides


class RenderError(ValueError):
    """The notification cannot be rendered for this provider (say why, naming the field)."""


@dataclass(frozen=True, slots=True)
class Renderer:
    #: ``(notification, overrides, now) -> rendered``; ``now`` is the publish's creation time,
    #: so absolute expirations do not move when a batch is retried later.
    render: Callable[[Notification, ProviderOverrides, float], Any]
    #: Bytes of the rendered payload that count against the provider's limit.
    size: Callable[[Any], int]
    #: The limit for this rendering (it may depend on it, e.g. APNs VoIP allows 5,120 B).
    limit: Callable[[Any], int]
    #: ``{"headers": {...}, "body": ...}`` as the provider would receive it (token placeholders).
    preview: Callable[[Any], dict[str, Any]]


@cache
def get_renderer(provider: str) -> Renderer:
    module = importlib.import_module(f"pushgate.domain.render_{provider}")
    renderer: Renderer = module.RENDERER
    return renderer


def render_for(provider: str, notification: Notification, overrides: ProviderOverrides, now: float) -> Any:
    if not notification.has_content() and overrides.for_provider(provider) is None:
        raise RenderError(
            f"nothing to send to {provider}: give notification.title, body, data or content_available, "
            f"or a native override in providers.{provider}"
        )
    return get_renderer(provider).render(notification, overrides, now)


def oversize(provider: str, rendered: Any) -> tuple[int, int] | None:
    """``None`` when the payload fits, else ``(size, limit)``."""
    r = get_renderer(provider)
    size, limit = r.size(rendered), r.limit(rendered)
    return None if size <= limit else (size, limit)
