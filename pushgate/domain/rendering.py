"""How each provider turns the unified notification into its own request (the seam every
provider plugs into).

A provider's rendering lives in ``pushgate/domain/render_<provider>.py`` and exports
``RENDERER``. Rendering is pure, so admission can size-check and ``/v1/publish/preview`` can
show the exact request without any I/O, and the dispatcher renders once per publish.

Nothing here looks a provider up by name: the provider registry
(``pushgate/providers/registry.py``) holds each provider's ``Renderer`` and the callers pass it
in, so this layer never needs to know which providers exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pushgate.domain.notification import Notification, ProviderOverrides


class RenderError(ValueError):
    """The notification cannot be rendered for this provider (say why, naming the field)."""


class NotificationError(ValueError):
    """The unified notification itself breaks one provider's rule (e.g. a data key FCM
    reserves); ``field`` is the notification field to name in the 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class Renderer:
    #: The provider name: the key of its native override in ``providers.<name>``.
    name: str
    #: ``(notification, overrides, now) -> rendered``; ``now`` is the publish's creation time,
    #: so absolute expirations do not move when a batch is retried later.
    render: Callable[[Notification, ProviderOverrides, float], Any]
    #: Bytes of the rendered payload that count against the provider's limit.
    size: Callable[[Any], int]
    #: The limit for this rendering (it may depend on it, e.g. APNs VoIP allows 5,120 B).
    limit: Callable[[Any], int]
    #: ``{"headers": {...}, "body": ...}`` as the provider would receive it (token placeholders).
    preview: Callable[[Any], dict[str, Any]]
    #: Admission-only check of the notification (raises :class:`NotificationError`): rules whose
    #: breach would fail every send, refused before anything is stored.
    check: Callable[[Notification], None] | None = None


def render_for(
    renderer: Renderer, notification: Notification, overrides: ProviderOverrides, now: float
) -> Any:
    provider = renderer.name
    if not notification.has_content() and overrides.for_provider(provider) is None:
        raise RenderError(
            f"nothing to send to {provider}: give notification.title, body, data or content_available, "
            f"or a native override in providers.{provider}"
        )
    return renderer.render(notification, overrides, now)


def oversize(renderer: Renderer, rendered: Any) -> tuple[int, int] | None:
    """``None`` when the payload fits, else ``(size, limit)``."""
    size, limit = renderer.size(rendered), renderer.limit(rendered)
    return None if size <= limit else (size, limit)
