"""notification-socket.io's REST API (netbulls/notification-socket.io) on the native engine
(docs/compat.md, "notification-socket.io").

- ``PUT /api/{userId}/register?connectionId=`` stores the connection id for the app's user
  (``store/compat_connections.py``: hashed, expiring); the client then shows it in the socket's
  ``register`` event, which the realtime gateway checks (``realtime/foreign.py``).
- ``POST /api/{userId}/push`` with ``{"message": <any JSON>}`` is one native publish, admitted by
  ``admit_publish`` like ``POST /v1/publish``: a ``user`` recipient, ``realtime: "only"`` (every
  session of the user, on every node, gets it once; a user with no session is recorded
  ``offline``), the posted JSON kept in the notification's ``data`` for the sessions' ``message``
  event.
- ``GET /api/status/ping`` and ``GET /api/status/info``: the original's answers, no key.

The backend's key is the app's own key in ``X-AUTH-TOKEN`` (the original compares it with its
``AUTH_TOKEN``). Answers are the original's: an empty 200; an empty 401 for a wrong key;
``Bad Request`` (400) for a missing user, connection id or message. What the original cannot say
(a 403 scope, a 429, the realtime gateway off, storage down) is that status with a plain-text
reason; every error also carries its reason in ``X-Pushgate-Error``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import FromPath

from pushgate.api.auth import authenticate_key
from pushgate.api.compat.errors import reshaped
from pushgate.api.errors import ApiError
from pushgate.api.publishes import admit_publish
from pushgate.api.schemas import PublishIn
from pushgate.api.services import ServicesDep
from pushgate.config import Settings
from pushgate.domain import clock
from pushgate.domain.scopes import Scope
from pushgate.realtime import foreign
from pushgate.store.apps import App
from pushgate.store.compat_connections import CompatConnections
from pushgate.store.db import Database

log = logging.getLogger("pushgate.api")

TITLE = "notification-socket.io"
#: The original's ``package.json``, which its ``/api/status/info`` answers.
INFO = {"name": "socket.io-server", "version": "1.0.0"}
#: Express's ``res.send(<string>)`` content type.
HTML = "text/html; charset=utf-8"
BAD_REQUEST = "Bad Request"
HEADER = "X-AUTH-TOKEN"


def _reason(message: str) -> str:
    """A reason fit for a header (ASCII, one line)."""
    return message.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")[:500]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    """The original's bodies (an empty 401, ``Bad Request``), else the reason as plain text."""
    out = {**(headers or {}), "X-Pushgate-Error": _reason(message)}
    if status == 401:
        return Response(b"", status_code=401, headers=out)
    if status == 400:
        return Response(BAD_REQUEST, status_code=400, media_type=HTML, headers=out)
    return Response(message, status_code=status, media_type="text/plain; charset=utf-8", headers=out)


def bad_request(why: str) -> ApiError:
    return ApiError(400, "invalid_request", why)


async def _app(request: Request[Any, Any, Any], services: ServicesDep, needed: Scope) -> App:
    """The app whose key is in ``X-AUTH-TOKEN``; the routes need the realtime gateway."""
    principal = await authenticate_key(request, request.headers.get(HEADER, "").strip(), needed)
    if services.realtime is None:
        raise ApiError(
            409,
            "realtime_disabled",
            "notification-socket.io's clients are socket.io sessions, and the realtime gateway is "
            "off on this server ([realtime] enabled = false): turn it on to use this API",
        )
    return principal.app


def _user(user_id: str) -> str:
    if not 0 < len(user_id) <= foreign.MAX_ID:
        raise bad_request(f"userId: 1 to {foreign.MAX_ID} characters (got {len(user_id)})")
    if "\x00" in user_id:  # no database stores it (PostgreSQL refuses NUL in text)
        raise bad_request("userId: contains a NUL character")
    return user_id


def _truthy(value: Any) -> bool:
    """JavaScript's truth, which the original's ``if (userId && req.body.message)`` tests:
    ``{}`` and ``[]`` are messages, ``""``, ``0``, ``false`` and ``null`` are not."""
    if isinstance(value, dict | list):
        return True
    return bool(value)


@put("/api/{user_id:str}/register", status_code=200)
async def register(
    request: Request[Any, Any, Any], services: ServicesDep, user_id: FromPath[str]
) -> Response[Any]:
    app = await _app(request, services, Scope.REGISTER)
    user = _user(user_id)
    ids = request.query_params.getall("connectionId", [])
    if len(ids) != 1 or not ids[0]:
        raise bad_request("connectionId: give exactly one, in the query string")
    connection_id = ids[0]
    if len(connection_id) > foreign.MAX_ID:
        raise bad_request(f"connectionId: at most {foreign.MAX_ID} characters (a UUID is 36)")
    if "\x00" in connection_id:
        raise bad_request("connectionId: contains a NUL character")
    await CompatConnections(services.db).register(app.id, user, connection_id, clock.now())
    log.debug("notification-socket.io connection id registered for a user of app %s", app.id)
    return Response(b"", status_code=200)


@post("/api/{user_id:str}/push", status_code=200)
async def push(
    request: Request[Any, Any, Any], services: ServicesDep, user_id: FromPath[str]
) -> Response[Any]:
    app = await _app(request, services, Scope.PUBLISH)
    user = _user(user_id)
    try:
        body = msgspec.json.decode(await request.body())
    except (msgspec.DecodeError, RecursionError):
        raise bad_request('the body is not JSON: send {"message": <your message JSON>}') from None
    message = body.get("message") if isinstance(body, dict) else None
    if not _truthy(message):
        raise bad_request('message: missing or empty; send {"message": <your message JSON>}')
    native = {
        "recipients": [{"type": "user", "user": user}],
        "notification": {"data": {foreign.MESSAGE_KEY: msgspec.json.encode(message).decode()}},
        "realtime": "only",
    }
    try:
        data = msgspec.convert(native, PublishIn)
    except msgspec.ValidationError as exc:
        raise bad_request(str(exc)) from None
    pub, _ = await admit_publish(app, services, data)
    return Response(b"", status_code=200, headers={"X-Pushgate-Publish-Id": pub.public_id})


@get("/api/status/ping")
async def ping() -> Response[str]:
    return Response("pong", media_type=HTML)


@get("/api/status/info")
async def info() -> dict[str, str]:
    return dict(INFO)


def connection_finder(db: Database) -> foreign.FindConnection:
    """What the realtime gateway checks a socket's ``register`` with (bound by the server when
    this front-end is on)."""
    store = CompatConnections(db)

    async def find(user: str, connection_id: str) -> str | None:
        return await store.find(user, connection_id, clock.now())

    return find


def build(settings: Settings) -> list[Any]:
    """The routes at the original's paths (no settings of its own beyond ``enabled``/``prefix``)."""
    del settings
    return [register, push, ping, info]


def _shape(status: int, _code: str, message: str, headers: Mapping[str, str] | None) -> Response[Any]:
    if status == 500:  # the original's (Express's) words for an unexpected error
        message = "Internal Server Error"
    return _error(status, message, dict(headers) if headers else None)


#: The native handling of every error (its status, logging, ``Retry-After``) in the original's
#: plain answers.
EXCEPTION_HANDLERS: dict[Any, Any] = reshaped(_shape)
