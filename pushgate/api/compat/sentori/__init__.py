"""Sentori's push API (goliajp/sentori) at ``/v1/push/...``, with its Expo-compatible routes.

Sentori's routes live under ``/v1`` like the native API's, so they are a router of their own
(``/v1/push``) with their own authentication hook and error shapes: the native ``/v1`` router's
hooks never run on them, and no native route starts with ``/v1/push``. Which Sentori word maps
onto which native thing is in ``mapping.py``; docs/compat.md ("Sentori") is the user's view.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Router
from litestar.types import ControllerRouterHandler

from pushgate.api.compat.sentori import devices, expo, sends, users
from pushgate.api.compat.sentori.common import SENTORI_HANDLERS, authenticate
from pushgate.config import Settings

TITLE = "Sentori"
#: Sentori's errors (``{"error", "detail"}``); the Expo routes carry Expo's on their own router.
EXCEPTION_HANDLERS = SENTORI_HANDLERS


def build(settings: Settings) -> Sequence[ControllerRouterHandler]:
    """The ``/v1/push`` router (``settings``: unused, Sentori's front-end has no settings of its
    own beyond ``enabled`` and ``prefix``)."""
    del settings
    return [
        Router(
            "/v1/push",
            route_handlers=[*devices.HANDLERS, *sends.HANDLERS, *users.HANDLERS, expo.router()],
            before_request=authenticate,
            exception_handlers=SENTORI_HANDLERS,
        )
    ]
