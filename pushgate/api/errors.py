"""The one error shape of DESIGN.md: ``{"error": {"code", "message", "details"}}``.

Litestar's own exceptions (validation, malformed JSON, 404 routes, 413 bodies) are translated
here so a client never sees another shape, and bad input is a 400, never a 422 or a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

log = logging.getLogger("pushgate.api")

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "not_ready",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def bad_request(message: str, details: Any = None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message, details)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} {ident!r} not found")


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return Response({"error": body}, status_code=status, headers=headers, media_type="application/json")


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    details = exc.extra if exc.extra else None
    message = exc.detail or "invalid request"
    if isinstance(details, list) and details and isinstance(details[0], dict):
        first = details[0]
        msg = first.get("message")
        key = first.get("key")
        if msg:
            message = f"{key}: {msg}" if key else str(msg)
    return error_response(400, "invalid_request", message, details)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        log.error("internal error: %s", exc.detail)
        return error_response(500, "internal", "internal error")
    code = _CODES.get(status, "error")
    message = exc.detail or code
    if status == 400 and ("JSON" in message or "decode" in message.lower()):
        message = f"malformed JSON body: {message}"
    return error_response(status, code, message, exc.extra or None, exc.headers)


def _unhandled(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error")


exception_handlers: dict[type[Exception] | int, Any] = {
    ApiError: _api_error,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unhandled,
}
