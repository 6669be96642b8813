"""Centrifugo's two HTTP forms: ``POST /api/<method>`` with the params as the body (Centrifugo
v5+, what ``cent`` sends) and ``POST /api`` with ``{"method", "params"}`` (the seed document's
example, Centrifugo v4). Both authenticate the app key first, with the scope the method needs,
so a wrong key is a 401 whatever the body says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.params import FromPath
from litestar.types import ControllerRouterHandler

from pushgate.api.auth import authenticate_key
from pushgate.api.common import reject_unstorable
from pushgate.api.compat.centrifugo import devices, push, topics
from pushgate.api.compat.centrifugo.protocol import (
    BAD_REQUEST,
    NOT_FOUND,
    UNAUTHORIZED,
    Call,
    CentrifugoError,
    api_key,
    result,
)
from pushgate.api.errors import ApiError
from pushgate.config import Settings
from pushgate.domain.scopes import Scope

Method = Callable[[Call, Any], Awaitable[dict[str, Any]]]

#: Every method: its implementation and the native scope its key needs.
METHODS: dict[str, tuple[Method, Scope]] = {
    "device_register": (devices.device_register, Scope.REGISTER),
    "device_update": (devices.device_update, Scope.REGISTER),
    "device_remove": (devices.device_remove, Scope.REGISTER),
    "device_list": (devices.device_list, Scope.READ),
    "device_topic_update": (topics.device_topic_update, Scope.REGISTER),
    "device_topic_list": (topics.device_topic_list, Scope.READ),
    "user_topic_update": (topics.user_topic_update, Scope.REGISTER),
    "user_topic_list": (topics.user_topic_list, Scope.READ),
    # The seed document's names of the two above.
    "push_user_channel_update": (topics.user_topic_update, Scope.REGISTER),
    "push_user_channel_list": (topics.user_topic_list, Scope.READ),
    "send_push_notification": (push.send_push_notification, Scope.PUBLISH),
    "update_push_status": (push.update_push_status, Scope.PUBLISH),
    "cancel_push": (push.cancel_push, Scope.PUBLISH),
}


async def _body(request: Request[Any, Any, Any]) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise CentrifugoError(BAD_REQUEST, f"malformed JSON body: {exc}", 400) from None


async def _authenticated(request: Request[Any, Any, Any], scope: Scope) -> Call:
    key = api_key(request)
    if not key:
        raise CentrifugoError(
            UNAUTHORIZED, "send the app key as 'X-API-Key: <key>' or 'Authorization: apikey <key>'", 401
        )
    principal = await authenticate_key(request, key, scope)
    return Call(principal.app, request.app.state.services)


async def _key_checked(request: Request[Any, Any, Any]) -> None:
    """Check the key alone (before saying what is wrong with the request): a wrong key is a
    401 whatever the body says; a valid key without the read scope is fine here."""
    try:
        await _authenticated(request, Scope.READ)
    except ApiError as exc:
        if exc.status != 403:
            raise


@post("/api/{method:str}", status_code=200, include_in_schema=False)
async def api_method(request: Request[Any, Any, Any], method: FromPath[str]) -> Response[Any]:
    """``POST /api/<method>``: the body is the params."""
    if method not in METHODS:
        await _key_checked(request)
        raise CentrifugoError(NOT_FOUND, f"method not found: {method!r}", 404)
    found = METHODS[method]
    call = await _authenticated(request, found[1])
    await reject_unstorable(request)  # NUL characters, a body that is not UTF-8
    return result(await found[0](call, await _body(request)))


@post("/api", status_code=200, include_in_schema=False)
async def api_command(request: Request[Any, Any, Any]) -> Response[Any]:
    """``POST /api``: ``{"method": ..., "params": {...}}`` (an unknown method is a method error:
    HTTP 200 with code 104, as Centrifugo answers it in this form)."""
    if not api_key(request):
        await _authenticated(request, Scope.READ)  # the 401
    try:
        body = await _body(request)
    except CentrifugoError:
        await _key_checked(request)  # a wrong key is a 401 before a malformed body is a 400
        raise
    method = body.get("method") if isinstance(body, dict) else None
    if not isinstance(method, str) or method not in METHODS:
        await _key_checked(request)
        if not isinstance(method, str):
            raise CentrifugoError(BAD_REQUEST, 'give {"method": "<name>", "params": {...}}')
        raise CentrifugoError(NOT_FOUND, f"method not found: {method!r}")
    # The key is checked once, with the scope the method needs.
    implementation, scope = METHODS[method]
    call = await _authenticated(request, scope)
    await reject_unstorable(request)
    return result(await implementation(call, body.get("params")))


def build(settings: Settings) -> Sequence[ControllerRouterHandler]:
    del settings  # nothing to configure beyond [compat.centrifugo] enabled/prefix
    return [api_method, api_command]
