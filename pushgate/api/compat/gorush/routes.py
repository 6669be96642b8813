"""gorush's HTTP API (``POST /api/push``, ``GET /api/stat/app``, ``GET /api/stat/go``) over the
native engine: each notification of a push is one native publish to raw tokens, admitted by
``admit_publish`` like ``POST /v1/publish``; nothing here sends.

gorush has no authentication: the front-end serves the one app ``[compat.gorush] app`` names,
and asks for that app's key as ``Authorization: Bearer`` unless ``require_key = false``
(private networks only). Errors are gorush's ``{"code": <status>, "message"}``.

A request is checked whole before anything is admitted (gorush's 400s), so a refused request
sends nothing. A notification that admission refuses after others of the same request were
admitted (backpressure, a limit) is answered as gorush answers a full queue: its tokens are
``failed-push`` logs of a 200, whatever the sync mode; when the first one is refused, the
request is answered with that error (nothing was admitted, the client may retry).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response, get, post

from pushgate.api.auth import authenticate_key
from pushgate.api.compat.errors import reshaped
from pushgate.api.compat.gorush.outcomes import Admitted, failed_entries, failure_logs, wait_closed
from pushgate.api.compat.gorush.schema import GorushPush, LogEntry, PushAnswer
from pushgate.api.compat.gorush.stats import app_stat, go_stat
from pushgate.api.compat.gorush.translate import check, to_publish
from pushgate.api.errors import ApiError
from pushgate.api.publish_batch import (
    admission_request,
    checked_bounds,
    stored_recipients,
    targeted_providers,
)
from pushgate.api.publishes import admit_publish
from pushgate.api.schemas import PublishIn
from pushgate.api.services import Services, ServicesDep
from pushgate.config import GorushCompat
from pushgate.domain import clock
from pushgate.domain.scopes import Scope
from pushgate.store.apps import App
from pushgate.store.faults import StorageUnavailable

log = logging.getLogger("pushgate.api")

MISSING = "Missing notifications field."
EMPTY = "Notifications field is empty."
_DECODER = msgspec.json.Decoder(GorushPush)


def gorush_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    """gorush's ``abortWithError``: ``{"code": <HTTP status>, "message": ...}``."""
    return Response({"code": status, "message": message}, status_code=status, headers=headers)


def _conf(services: Services) -> GorushCompat:
    conf: GorushCompat = services.settings.compat.gorush
    return conf


async def gorush_app(request: Request[Any, Any, Any], services: Services, needed: Scope) -> App:
    """The app this front-end serves, with its key checked when ``require_key`` is on."""
    conf = _conf(services)
    if conf.require_key:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(
                401,
                "unauthorized",
                "missing API key: send 'Authorization: Bearer <app key>' (the key of the app "
                "[compat.gorush] serves)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = await authenticate_key(request, key.strip(), needed)
        if conf.app not in (principal.app.id, principal.app.name):
            raise ApiError(
                403,
                "forbidden",
                f"this key belongs to app {principal.app.name!r}; [compat.gorush] serves app "
                f"{conf.app!r}: use that app's key",
            )
        return principal.app
    app = await services.apps.find(conf.app)
    if app is None:
        raise ApiError(503, "not_ready", f"[compat.gorush] app {conf.app!r} does not exist")
    return app


def _parse(raw: bytes, limit: int) -> GorushPush:
    try:
        body = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        # A body that is not an object, or has no usable ``notifications``, is gorush's own
        # message (its binder fails on it); a field of the wrong type inside an item says where.
        inside = "at `$.notifications[" in text
        raise ApiError(400, "invalid_request", text.replace("$.", "", 1) if inside else MISSING) from None
    except (msgspec.DecodeError, RecursionError):
        raise ApiError(400, "invalid_request", MISSING) from None
    if not body.notifications:
        raise ApiError(400, "invalid_request", EMPTY)
    if len(body.notifications) > limit:
        raise ApiError(
            400, "invalid_request", f"Number of notifications({len(body.notifications)}) over limit({limit})"
        )
    return body


async def _precheck(index: int, app: App, services: Services, data: PublishIn) -> None:
    """Admission's checks of one notification's content and recipients (tokens normalised,
    their count, each targeted provider's rendering and size), run on every notification before
    the first is admitted, so that a request refused for its content sends nothing at all."""
    try:
        now = clock.now()
        checked_bounds(data, services.settings.limits.max_recipients_per_publish, now)
        recipients, token_providers = stored_recipients(data, services)
        admission_request(data, recipients, await targeted_providers(app, services, token_providers), now)
    except ApiError as exc:
        raise ApiError(exc.status, exc.code, f"notifications[{index}]: {exc.message}") from None


@post("/api/push", status_code=200)
async def push(request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
    app = await gorush_app(request, services, Scope.PUBLISH)
    conf = _conf(services)
    body = _parse(await request.body(), conf.max_notification)
    for i, item in enumerate(body.notifications):
        check(i, item)
    publishes = [to_publish(i, item) for i, item in enumerate(body.notifications)]
    for i, data in enumerate(publishes):
        await _precheck(i, app, services, data)
    admitted: list[Admitted] = []
    logs: list[LogEntry] = []
    counts = 0
    for item, data in zip(body.notifications, publishes, strict=True):
        try:
            pub, _ = await admit_publish(app, services, data)
        except (ApiError, StorageUnavailable) as exc:
            if not admitted:
                raise
            logs += failed_entries(item, exc.message if isinstance(exc, ApiError) else exc.fault.message)
        else:
            admitted.append(Admitted(item, pub))
        # gorush's own count: ``tokens`` (not ``to``), plus one when ``topic`` is set, whatever
        # the platform (an iOS topic is the bundle id, yet counted: clients compare with it).
        counts += len(item.tokens or ()) + (1 if item.topic else 0)
    sync = conf.sync if body.sync is None else body.sync
    if sync and admitted:
        closed = await wait_closed(services, admitted)
        for done in admitted:
            if done.publish.id in closed:
                logs += await failure_logs(services, app.id, done)
    answer = PushAnswer(success="ok", counts=counts, logs=logs)
    headers = {"X-Pushgate-Publish-Ids": ",".join(a.publish.public_id for a in admitted)}
    return Response(msgspec.to_builtins(answer), status_code=200, headers=headers)


@get("/api/stat/app")
async def stat_app(request: Request[Any, Any, Any], services: ServicesDep) -> dict[str, Any]:
    app = await gorush_app(request, services, Scope.READ)
    return await app_stat(services.db, app.id)


@get("/api/stat/go")
async def stat_go(request: Request[Any, Any, Any], services: ServicesDep) -> dict[str, Any]:
    await gorush_app(request, services, Scope.READ)
    return go_stat()


def _shape(status: int, _code: str, message: str, headers: Mapping[str, str] | None) -> Response[Any]:
    return gorush_error(status, message, dict(headers) if headers else None)


#: The native handling of every error (its status, logging, ``Retry-After``) in gorush's shape.
EXCEPTION_HANDLERS: dict[Any, Any] = reshaped(_shape)
ROUTES = (push, stat_app, stat_go)
