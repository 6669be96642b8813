"""gorush's API (``POST /api/push``, ``GET /api/stat/app``, ``GET /api/stat/go``) on the native
engine (docs/compat.md, "gorush"). gorush's ``/healthz`` and ``/metrics`` are the native ones.

``mount.FRONT_ENDS`` builds the ``FrontEnd`` from :func:`build` and :data:`EXCEPTION_HANDLERS`
(this package does not import ``mount``: that would be a cycle)."""

from __future__ import annotations

from collections.abc import Sequence

from litestar.types import ControllerRouterHandler

from pushgate.api.compat.gorush.routes import EXCEPTION_HANDLERS, ROUTES
from pushgate.config import Settings

__all__ = ["EXCEPTION_HANDLERS", "build"]


def build(settings: Settings) -> Sequence[ControllerRouterHandler]:
    """The routes at gorush's own paths; they read ``[compat.gorush]`` per request."""
    del settings
    return ROUTES
