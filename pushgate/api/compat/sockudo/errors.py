"""Sockudo's error shape: ``{"error": <message>, "code": <code>, "status": <HTTP status>}``.

Every error of the front-end goes through the native handlers first (``api/compat/errors.py``:
the same status and ``Retry-After`` as on ``/v1``), and is then re-shaped, its code renamed to
Sockudo's own (``auth_failed``, ``invalid_input``, ``not_found``, ``rate_limited``, …).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Response

from pushgate.api.compat.errors import reshaped

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


def _shape(status: int, code: str, message: str, headers: Mapping[str, str] | None) -> Response[Any]:
    # Sockudo's own code where it has one for the status; auth_failed etc. pass through as is.
    sockudo_code = code if code in CODES.values() else CODES.get(status, code or "error")
    return sockudo_error(status, message, sockudo_code, headers)


#: The front-end's router's handlers: everything, re-shaped.
exception_handlers: dict[Any, Any] = reshaped(_shape)
