"""Sockudo's push API (``/apps/{appId}/push/...``) on the native engine (docs/compat.md, Sockudo).

Requests are signed Pusher-style with a signing key (``/v1/compat/sockudo/keys``); the routes
translate Sockudo's camelCase shapes onto the native registry, publish admission, templates,
credentials, dead letters and receipts. Errors are Sockudo's ``{"error", "code", "status"}``.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Router
from litestar.types import ControllerRouterHandler

from pushgate.api.compat.sockudo import admin, publish, registry
from pushgate.api.compat.sockudo.errors import exception_handlers as exception_handlers
from pushgate.config import Settings


def build(settings: Settings) -> Sequence[ControllerRouterHandler]:
    del settings  # nothing configurable beyond [compat.sockudo] enabled/prefix
    return [
        Router(
            "/apps/{app_id:str}/push",
            route_handlers=[*registry.HANDLERS, *publish.HANDLERS, *admin.HANDLERS],
        )
    ]
