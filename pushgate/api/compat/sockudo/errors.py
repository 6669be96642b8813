"""Sockudo's error shape: ``{"error": <message>, "code": <code>, "status": <HTTP status>}``.

Every error of the front-end goes through the native handlers first (``api/errors.py``: so a
validation error, a storage outage or an unexpected exception gets the same status and
``Retry-After`` as on ``/v1``), and is then re-shaped, its code renamed to Sockudo's own
(``auth_failed``, ``invalid_input``, ``not_found``, ``rate_limited``, …).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from pushgate.api.errors import exception_handlers as native_handlers

#: Sockudo's code for each status (its ``AppError`` variants); a status not here keeps the
#: native code.
CODES = {
    400: "invalid_input",
    401: "auth_failed",
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    501: "not_implemented",
    503: "service_unavailable",
}


def sockudo_error(status: int, message: str, code: str | None = None, headers: Any = None) -> Response[Any]:
    body = {"error": message, "code": code or CODES.get(status, "error"), "status": status}
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _native(exc: Exception) -> Any:
    for cls in type(exc).__mro__:
        handler = native_handlers.get(cls)
        if handler is not None:
            return handler
    return native_handlers[Exception]


def _reshape(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    native: Response[Any] = _native(exc)(request, exc)
    content: Any = native.content
    found: Any = content.get("error") if isinstance(content, dict) else None
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    status = int(native.status_code or 500)
    code = str(error.get("code", ""))
    # Sockudo's own code where it has one for the status; auth_failed etc. pass through as is.
    sockudo_code = code if code in CODES.values() else CODES.get(status, code or "error")
    return sockudo_error(status, str(error.get("message", "error")), sockudo_code, native.headers)


#: The front-end's router's handlers: everything, re-shaped.
exception_handlers: dict[Any, Any] = {cls: _reshape for cls in native_handlers}
