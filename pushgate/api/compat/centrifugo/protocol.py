"""Centrifugo's HTTP API protocol: where the key is, the ``{"result"}``/``{"error"}`` envelope,
its error codes, and how the native API's errors become them.

Centrifugo answers a *method* error (bad params, not found, conflict) with HTTP 200 and
``{"error": {"code", "message"}}`` in the body (its default ``error_mode``); its client
libraries read the code from the body and treat any other HTTP status as a transport failure.
So only what is not about the method's params keeps an HTTP status here: a missing or wrong
key (401), a key without the scope (403), a rate limit (429, with ``Retry-After``), an
undecodable body (400), an unknown ``/api/<method>`` path (404) and a database that cannot take
writes (503, with ``Retry-After``: nothing was stored, the same request will work later).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from pushgate.api.errors import ApiError
from pushgate.api.services import Services
from pushgate.store.apps import App
from pushgate.store.faults import StorageUnavailable, fault_reason

log = logging.getLogger("pushgate.api.compat.centrifugo")

#: Centrifugo's server API error codes (``internal/apiproto/errors.go``).
INTERNAL = 100
UNAUTHORIZED = 101
PERMISSION_DENIED = 103
NOT_FOUND = 104
LIMIT_EXCEEDED = 106
BAD_REQUEST = 107
NOT_AVAILABLE = 108
TOO_MANY_REQUESTS = 111
CONFLICT = 113

_MESSAGES = {
    INTERNAL: "internal server error",
    UNAUTHORIZED: "unauthorized",
    PERMISSION_DENIED: "permission denied",
    NOT_FOUND: "not found",
    LIMIT_EXCEEDED: "limit exceeded",
    BAD_REQUEST: "bad request",
    NOT_AVAILABLE: "not available",
    TOO_MANY_REQUESTS: "too many requests",
    CONFLICT: "conflict",
}

#: A native error's HTTP status → Centrifugo's code (and the HTTP status kept, if any).
_FROM_NATIVE: dict[int, tuple[int, int]] = {
    400: (BAD_REQUEST, 200),
    404: (NOT_FOUND, 200),
    409: (CONFLICT, 200),
    413: (LIMIT_EXCEEDED, 200),
    401: (UNAUTHORIZED, 401),
    403: (PERMISSION_DENIED, 403),
    429: (TOO_MANY_REQUESTS, 429),
    503: (INTERNAL, 503),
}


@dataclass(frozen=True, slots=True)
class Call:
    """What a method runs with: the authenticated app and the native services."""

    app: App
    services: Services


class CentrifugoError(Exception):
    """A Centrifugo error: ``code`` (above), a message that says what to fix, and the HTTP
    status (200 for a method error)."""

    def __init__(
        self, code: int, detail: str = "", status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.code = code
        self.message = f"{_MESSAGES.get(code, 'error')}: {detail}" if detail else _MESSAGES.get(code, "error")
        super().__init__(self.message)
        self.status = status
        self.headers = headers or {}


def bad(detail: str) -> CentrifugoError:
    return CentrifugoError(BAD_REQUEST, detail)


def not_available(detail: str) -> CentrifugoError:
    """A Centrifugo feature pushgate has no counterpart for (docs/compat.md lists them)."""
    return CentrifugoError(NOT_AVAILABLE, f"{detail} (not supported by pushgate; see docs/compat.md)")


def not_found(detail: str) -> CentrifugoError:
    return CentrifugoError(NOT_FOUND, detail)


def result(value: Any) -> Response[Any]:
    return Response({"result": value}, status_code=200, media_type="application/json")


def error_response(err: CentrifugoError) -> Response[Any]:
    return Response(
        {"error": {"code": err.code, "message": err.message}},
        status_code=err.status,
        headers=err.headers,
        media_type="application/json",
    )


def from_native(exc: ApiError) -> CentrifugoError:
    """The native route's error (raised by the shared validation and store paths) in
    Centrifugo's terms, with the native message (it names the field and the fix)."""
    code, status = _FROM_NATIVE.get(exc.status, (INTERNAL, 500))
    return CentrifugoError(code, exc.message, status, exc.headers)


def params_of(raw: Any, into: type[Any], where: str = "params") -> Any:
    """``raw`` (a JSON object) decoded into a request Struct; 107 naming the field otherwise."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise bad(f"{where}: expected a JSON object")
    try:
        return msgspec.convert(raw, into)
    except msgspec.ValidationError as exc:
        raise bad(_located(str(exc), where)) from None


def _located(message: str, where: str) -> str:
    # msgspec says "... - at `$.recipient.fcm_tokens[0]`": name it from the params object.
    text, sep, at = message.partition(" - at `$")
    return f"{where}{at.rstrip('`')}: {text}" if sep else f"{where}: {text}"


def api_key(request: Request[Any, Any, Any]) -> str:
    """The key as Centrifugo's clients send it: ``X-API-Key``, ``Authorization: apikey <key>``
    or ``?api_key=`` (empty: none given)."""
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "apikey" and credential.strip():
        return credential.strip()
    return str(request.query_params.get("api_key", "")).strip()


def _centrifugo(_: Request[Any, Any, Any], exc: CentrifugoError) -> Response[Any]:
    return error_response(exc)


def _native(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return error_response(from_native(exc))


def _storage(_: Request[Any, Any, Any], exc: StorageUnavailable) -> Response[Any]:
    return error_response(
        CentrifugoError(
            INTERNAL, f"nothing was stored, retry later: {exc.fault.message}", 503, {"Retry-After": "5"}
        )
    )


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    return error_response(CentrifugoError(BAD_REQUEST, exc.detail or "invalid request", 400))


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        log.error("internal error: %s", exc.detail)
        return error_response(CentrifugoError(INTERNAL, status=500))
    code = {401: UNAUTHORIZED, 403: PERMISSION_DENIED, 404: NOT_FOUND, 413: LIMIT_EXCEEDED}.get(
        status, BAD_REQUEST
    )
    return error_response(CentrifugoError(code, exc.detail or "", status, exc.headers))


def _unhandled(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if fault_reason(exc) is not None:  # a database error outside Database.read/write
        return error_response(
            CentrifugoError(INTERNAL, "nothing was stored, retry later", 503, {"Retry-After": "5"})
        )
    log.exception("unhandled error", exc_info=exc)
    return error_response(CentrifugoError(INTERNAL))


exception_handlers: dict[type[Exception] | int, Any] = {
    CentrifugoError: _centrifugo,
    ApiError: _native,
    StorageUnavailable: _storage,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unhandled,
}
