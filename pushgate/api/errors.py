"""The one error shape of the API (docs/api.md, "Errors"): ``{"error": {"code", "message", "details"}}``.

Litestar's own exceptions (validation, malformed JSON, 404 routes, 413 bodies) are translated
here so a client never sees another shape, and bad input is a 400, never a 422 or a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec

from pushgate.api.schemas import ErrorBody
from pushgate.store.faults import StorageFault, StorageUnavailable, fault_reason, short_detail

log = logging.getLogger("pushgate.api")

#: Seconds a client is told to wait (``Retry-After``) when the database cannot take writes: an
#: operator freeing disk space or a database failing over takes at least that long, and a client
#: retrying sooner only adds load.
STORAGE_RETRY_AFTER = 5

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


_DESCRIPTIONS = {
    400: "Invalid request (body, query or path); `details` may locate the problem",
    401: "Missing or invalid API key",
    403: "The API key lacks the scope this route needs",
    404: "No such resource (or route)",
    405: "Method not allowed on this path",
    409: "Conflicts with an existing resource",
    413: "Request body too large",
    429: "Too much work queued (backpressure), the key's request rate, or too many wrong keys from "
    "this address; retry after `Retry-After` seconds",
    503: "Not ready, or the database cannot store writes now (`storage_unavailable`, with `Retry-After`)",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` documenting the error shape for the given statuses."""
    return {
        status: ResponseSpec(ErrorBody, generate_examples=False, description=_DESCRIPTIONS[status])
        for status in statuses
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
        for item in details:
            # Litestar names the whole body after the handler argument ("data"); say "body".
            if isinstance(item, dict) and item.get("key") == "data" and item.get("source") == "body":
                item["key"] = "body"
        first = details[0]
        if first.get("message"):
            key = first.get("key")
            message = f"{key}: {first['message']}" if key else str(first["message"])
    elif _looks_like_json_error(message):
        message = f"malformed JSON body: {message}"
    return error_response(400, "invalid_request", message, details)


def _looks_like_json_error(message: str) -> bool:
    return "JSON" in message or "truncated" in message or "decode" in message.lower()


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        log.error("internal error: %s", exc.detail)
        return error_response(500, "internal", "internal error")
    code = _CODES.get(status, "error")
    message = exc.detail or code
    if status == 400 and _looks_like_json_error(message) and not message.startswith("malformed"):
        message = f"malformed JSON body: {message}"
    return error_response(status, code, message, exc.extra or None, exc.headers)


def storage_unavailable(fault: StorageFault) -> Response[Any]:
    """``503 storage_unavailable``: nothing of the request was stored; the same request will work
    once the database takes writes again, so the client is told when to retry."""
    return error_response(
        503,
        "storage_unavailable",
        f"the request was not stored, retry later: {fault.message}",
        {"reason": fault.reason},
        {"Retry-After": str(STORAGE_RETRY_AFTER)},
    )


def _storage(_: Request[Any, Any, Any], exc: StorageUnavailable) -> Response[Any]:
    # The engine's and readiness's logs say it once per interval; one line per request here
    # would flood the log exactly when the disk is full.
    log.debug("request refused: %s", exc.fault.message)
    return storage_unavailable(exc.fault)


def _unhandled(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    reason = fault_reason(exc)
    if reason is not None:  # a database error raised outside Database.read/write
        return storage_unavailable(StorageFault(reason, short_detail(exc), 0.0))
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error")


def _recursion(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec gives up on a body nested deeper than the interpreter's recursion limit.
    if "deserializing" in str(exc):
        return error_response(400, "invalid_request", "malformed JSON body: nested too deeply")
    return _unhandled(request, exc)


exception_handlers: dict[type[Exception] | int, Any] = {
    ApiError: _api_error,
    StorageUnavailable: _storage,
    ValidationException: _validation,
    HTTPException: _http,
    RecursionError: _recursion,
    Exception: _unhandled,
}
