"""Authentication, body decoding and the two error shapes of the Sentori front-end.

Sentori answers errors as ``{"error": "<code>", "detail": "<why>"}``; its Expo-compatible routes
answer as Expo's push service does, ``{"errors": [{"code", "message", "isTransient"}]}`` (what
Expo's server SDKs raise ``PushServerError`` from). Both shapes are produced from the native
``ApiError`` every shared path raises, so a rule (a key's scope, backpressure, a bad time) is
decided once and only worded here.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from pushgate.api.auth import authenticate_key
from pushgate.api.common import reject_unstorable
from pushgate.api.errors import ApiError
from pushgate.api.services import Services
from pushgate.domain.scopes import Scope
from pushgate.store.apps import App

log = logging.getLogger("pushgate.api")

T = TypeVar("T")

#: Sentori's codes for the native API's (the others are passed as they are).
_SENTORI_CODES = {"invalid_request": "invalid_body", "not_found": "not_found", "rate_limited": "rate_limited"}
#: Sentori's words for the framework's own refusals.
_HTTP_CODES = {
    400: "invalid_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
_EXPO_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "INSUFFICIENT_ACCESS_TOKEN",
    404: "NOT_FOUND",
    413: "PUSH_TOO_MANY_NOTIFICATIONS",
    429: "TOO_MANY_REQUESTS",
}


async def authenticate(request: Request[Any, Any, Any]) -> None:
    """``Authorization: Bearer <app key>``, as Sentori's ingest token; the scope a route needs
    is its ``opt["scope"]`` (admin when a route forgot one: closed, not open)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    needed = request.route_handler.opt.get("scope", Scope.ADMIN)
    await authenticate_key(request, key, needed)
    await reject_unstorable(request)


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def app_of(request: Request[Any, Any, Any]) -> App:
    app: App = request.state.app
    return app


async def body_as(request: Request[Any, Any, Any], kind: type[T]) -> T:
    """The JSON body decoded strictly as ``kind`` (a 400 naming the field otherwise)."""
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"null", type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_body", f"malformed JSON body: {exc}") from None


def sentori_error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    body: dict[str, Any] = {"error": code}
    if detail:
        body["detail"] = detail
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def expo_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    item = {"code": code, "message": message, "isTransient": status == 429 or status >= 500}
    return Response({"errors": [item]}, status_code=status, headers=headers, media_type="application/json")


def _sentori_api(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return sentori_error(exc.status, _SENTORI_CODES.get(exc.code, exc.code), exc.message, exc.headers)


def _sentori_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= 500:
        log.error("internal error: %s", exc.detail)
        return sentori_error(500, "internal", "")
    code = (
        "invalid_body" if isinstance(exc, ValidationException) else _HTTP_CODES.get(exc.status_code, "error")
    )
    return sentori_error(exc.status_code, code, str(exc.detail or ""), exc.headers)


def _expo_api(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    code = exc.code if exc.code.isupper() else _EXPO_CODES.get(exc.status, "INTERNAL_SERVER_ERROR")
    return expo_error(exc.status, code, exc.message, exc.headers)


def _expo_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= 500:
        log.error("internal error: %s", exc.detail)
        return expo_error(500, "INTERNAL_SERVER_ERROR", "internal error")
    code = _EXPO_CODES.get(exc.status_code, "VALIDATION_ERROR")
    return expo_error(exc.status_code, code, str(exc.detail or ""), exc.headers)


SENTORI_HANDLERS: dict[Any, Any] = {ApiError: _sentori_api, HTTPException: _sentori_http}
EXPO_HANDLERS: dict[Any, Any] = {ApiError: _expo_api, HTTPException: _expo_http}
