"""Every compat front-end's errors: the native handling, then the system's own shape.

An error of a front-end goes through the native handlers first (``api/errors.py``), so a
validation error, a storage outage or an unexpected exception gets the same status, logging and
``Retry-After`` as on ``/v1``; the front-end only says how its system writes that answer (a
``Shape``). One path for all, so a new front-end cannot forget a case (the 503 of a full disk, the
500 that must not leak a traceback).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from litestar import Request, Response

from pushgate.api.errors import exception_handlers as native_handlers

#: (status, native code, message, headers) → the system's answer.
Shape = Callable[[int, str, str, Mapping[str, str] | None], Response[Any]]


def _native(exc: Exception) -> Any:
    for cls in type(exc).__mro__:
        handler = native_handlers.get(cls)
        if handler is not None:
            return handler
    return native_handlers[Exception]


def reshaped(shape: Shape) -> dict[Any, Any]:
    """Exception handlers for a front-end's router: the native answer, written by ``shape``."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        native: Response[Any] = _native(exc)(request, exc)
        content: Any = native.content
        found: Any = content.get("error") if isinstance(content, dict) else None
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        status = int(native.status_code or 500)
        return shape(status, str(error.get("code", "")), str(error.get("message", "error")), native.headers)

    return {cls: handle for cls in native_handlers}
