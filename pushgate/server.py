"""Builds the ASGI app: the HTTP API, health checks and, in the same process, the workers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Router, asgi, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pushgate import __version__
from pushgate.api.auth import authenticate
from pushgate.api.campaigns import CampaignController
from pushgate.api.channels import ChannelController
from pushgate.api.client_tokens import ClientTokenController
from pushgate.api.common import reject_unstorable
from pushgate.api.compat.mount import compat_routers
from pushgate.api.compat.notification_socketio import connection_finder
from pushgate.api.compat_keys import CompatKeyController
from pushgate.api.connections import body_timeout
from pushgate.api.credentials import CredentialController
from pushgate.api.deadletters import DeadLetterController
from pushgate.api.device_search import AudienceController, DeviceSearchController
from pushgate.api.devices import DeviceController
from pushgate.api.errors import exception_handlers
from pushgate.api.health import healthz, healthz_head, readyz
from pushgate.api.keys import KeyController
from pushgate.api.policies import PolicyController
from pushgate.api.provider_health import providers_health
from pushgate.api.publish_batch import PublishBatchController
from pushgate.api.publishes import PublishController
from pushgate.api.realtime import RealtimeController
from pushgate.api.receipts import ReceiptController
from pushgate.api.services import Services, provide_app, provide_key, provide_services
from pushgate.api.templates import TemplateController
from pushgate.api.throttle import client_key
from pushgate.api.webhooks import WebhookController
from pushgate.config import Settings
from pushgate.engine.providers import ProviderPool
from pushgate.providers.transport import Transport
from pushgate.realtime.delivery import RealtimeDelivery
from pushgate.realtime.gateway import PATH, RealtimeGateway
from pushgate.realtime.tokens import FindApp, SecretFor
from pushgate.runtime import open_runtime
from pushgate.store.apps import AppStore
from pushgate.store.credentials import check_secret_key
from pushgate.store.db import serving_requests
from pushgate.store.realtime import RealtimeSecrets
from pushgate.store.realtime_deliveries import RealtimeDeliveries
from pushgate.store.secretbox import SecretKeyError

log = logging.getLogger("pushgate")
access_log = logging.getLogger("pushgate.access")

DEFAULT_APP = "default"


def _request_log(app: ASGIApp) -> ASGIApp:
    """One log line per request with a request id (also returned as ``X-Request-Id``).

    Only the path is logged, never the query string or body, so tokens and keys stay out of logs.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        rid = os.urandom(6).hex()  # 12 hex digits as before, without building a UUID
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            access_log.info(
                "req=%s %s %s %d %.1fms",
                rid,
                scope.get("method", "-"),
                scope.get("path", "-"),
                status,
                (time.perf_counter() - start) * 1000,
            )

    return middleware


def _requests_share(app: ASGIApp) -> ASGIApp:
    """A request's database connections come from the requests' share of the pool
    (``store/db.py``): polling clients cannot take every connection from the workers."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan starts the workers: never marked
            await app(scope, receive, send)
            return
        async with serving_requests():
            await app(scope, receive, send)

    return middleware


def _plain_optional_query(doc: dict[str, Any]) -> dict[str, Any]:
    """Document an optional query parameter as its type, not Litestar's ``oneOf: [T, null]``.

    An absent parameter is ``None``; ``null`` is not something a query string can carry.
    """
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            for param in operation.get("parameters", []) if isinstance(operation, dict) else ():
                schema = param.get("schema", {})
                branches = schema.get("oneOf") or []
                types = [b for b in branches if b.get("type") != "null"]
                optional = param.get("in") == "query" and not param.get("required")
                if optional and len(types) == 1 < len(branches):
                    param["schema"] = {**{k: v for k, v in schema.items() if k != "oneOf"}, **types[0]}
    return doc


async def _before_v1(request: Request[Any, Any, Any]) -> None:
    await authenticate(request)  # first: a wrong key is a 401 whatever the request holds
    await reject_unstorable(request)


@get("/metrics", include_in_schema=False, sync_to_thread=False, media_type=CONTENT_TYPE_LATEST)
def metrics() -> bytes:
    """Prometheus exposition of every metric pushgate declares (pushgate/metrics.py)."""
    return generate_latest()


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return _plain_optional_query(request.app.openapi_schema.to_schema())


async def ensure_default_app(apps: AppStore, key: str | None, echo: Callable[[str], None]) -> None:
    """First start creates the ``default`` app and shows its key once."""
    app = await apps.get_by_name(DEFAULT_APP)
    if app is None:
        app, plain = await apps.create(DEFAULT_APP, key=key)
        if key:
            echo(f"Created app 'default' ({app.id}) with the key from PUSHGATE_DEFAULT_APP_KEY.")
        else:
            echo(f"Created app 'default' ({app.id}). Its API key, shown only this once:\n\n    {plain}\n")
    elif key and not await apps.has_key(app.id, key):
        await apps.add_key(app.id, key, name="default_app_key")
        echo("Added PUSHGATE_DEFAULT_APP_KEY as a key of app 'default'.")
    elif key and await apps.authenticate(key) is None:
        echo(
            "PUSHGATE_DEFAULT_APP_KEY was revoked and authenticates nothing: unset it, or set a new "
            "key (a revoked key is never added again)."
        )


async def _provider_report(
    pool: ProviderPool, apps: AppStore, settings: Settings, echo: Callable[[str], None]
) -> None:
    """Validate every app's credentials now (fail at startup, naming the key) and say what is set up."""
    any_configured = False
    names = [DEFAULT_APP, *[n for n in settings.apps if n != DEFAULT_APP]]
    for name in names:
        app = await apps.get_by_name(name) or await apps.get(name)
        if app is None:
            log.warning(
                "config has credentials for app %r, which does not exist (pushgate apps create %s)",
                name,
                name,
            )
            continue
        try:
            ok = await pool.validate(app.id, app.name)
        except SecretKeyError as exc:
            # Uploaded credentials this process cannot read: keep serving (their deliveries fail
            # with credential_invalid) and say how to fix it, rather than refusing to start.
            echo(f"App '{app.name}': {exc}")
            continue
        if ok:
            any_configured = True
            echo(f"App '{app.name}': credentials for {', '.join(ok)}.")
    if not any_configured:
        echo(
            "No provider has credentials yet, so publishes will fail with no_credentials.\n"
            "To try pushgate locally with the provider lab:\n"
            "    pushgate lab --write-credentials var/lab &\n"
            "    cat var/lab/pushgate-lab.toml >> pushgate.toml && pushgate serve --config pushgate.toml"
        )


def _app_lookup(apps: AppStore, settings: Settings, stored: RealtimeSecrets) -> tuple[FindApp, SecretFor]:
    """What the realtime gateway resolves a connection token's ``iss`` with: the app by name or
    id (the gateway caches it, misses too), and its signing secret (configured, else stored:
    ``store/realtime.py`` caches it 5 s)."""

    async def find_app(issuer: str) -> tuple[str, str] | None:
        app = await apps.find(issuer)
        return (app.id, app.name) if app is not None else None

    async def secret_for(app_id: str, name: str) -> str:
        configured = settings.realtime_secret(app_id, name)
        return configured if configured is not None else await stored.secret(app_id)

    return find_app, secret_for


def _socketio_mount(realtime: RealtimeGateway) -> Any:
    """socket.io at ``/socket.io/`` on the API's port (WebSocket and long-polling). Litestar
    strips the mount path; python-socketio routes on the full one, so it is put back."""

    @asgi(f"/{PATH}", is_mount=True, copy_scope=True, include_in_schema=False)
    async def socketio_mount(scope: Scope, receive: Receive, send: Send) -> None:
        scope["path"] = f"/{PATH}" + scope["path"]
        await realtime.asgi(scope, receive, send)

    return socketio_mount


def create_app(
    settings: Settings,
    *,
    run_workers: bool = True,
    echo: Callable[[str], None] | None = None,
    transport: Transport | None = None,
) -> Litestar:
    """``transport``: what every provider sends through (default: the production HTTP client,
    built and closed here); a caller that passes one (a test's mock) owns and closes it."""
    say = echo or (lambda line: print(line, flush=True))
    rs = settings.realtime
    realtime = (
        RealtimeGateway(
            cors_allowed_origins=rs.cors_allowed_origins,
            ping_interval=rs.ping_interval_seconds,
            ping_timeout=rs.ping_timeout_seconds,
            redis_url=settings.redis_url,
        )
        if rs.enabled
        else None
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_runtime(settings, workers=run_workers, transport=transport) as rt:
            # Uploaded credentials this process cannot read refuse the start (SecretKeyError);
            # `pushgate serve` checks it first to say so in one line.
            await check_secret_key(rt.db, settings.secret_key)
            await ensure_default_app(rt.apps, settings.default_app_key, say)
            await _provider_report(rt.pool, rt.apps, settings, say)
            app.state.services = Services(
                settings=settings,
                db=rt.db,
                apps=rt.apps,
                devices=rt.devices,
                channels=rt.channels,
                bindings=rt.bindings,
                publishes=rt.publishes,
                pool=rt.pool,
                creds=rt.creds,
                policies=rt.policies,
                policy_loader=rt.policy_loader,
                engine=rt.engine,
                backpressure=rt.backpressure,
                realtime_secrets=RealtimeSecrets(rt.db),
                realtime=realtime,
            )
            delivery: RealtimeDelivery | None = None
            if realtime is not None:
                await realtime.start()
                # Realtime publishes reach this node's sessions: emitted by its own workers, or,
                # with Redis, on request of any node's (docs/realtime.md).
                acks = RealtimeDeliveries(rt.db, rt.publishes)
                delivery = RealtimeDelivery(realtime, acks, settings.redis_url)
                await delivery.start()
                if rt.engine is not None:
                    rt.engine.realtime_stage.delivery = delivery
                services = app.state.services
                realtime.bind(
                    *_app_lookup(rt.apps, settings, services.realtime_secrets),
                    throttle=services.gate.failures,  # one throttle with the API's wrong keys
                    address_of=client_key,
                    # Tokenless sessions that register a connection id (docs/compat.md).
                    find_connection=(
                        connection_finder(rt.db) if settings.compat.notification_socketio.enabled else None
                    ),
                )
            if rt.engine is not None:
                await rt.engine.start()
            try:
                yield
            finally:
                if realtime is not None:
                    await realtime.close()
                if delivery is not None:
                    await delivery.stop()

    v1 = Router(
        "/v1",
        route_handlers=[
            DeviceController,
            DeviceSearchController,
            AudienceController,
            ChannelController,
            ClientTokenController,
            PublishController,
            PublishBatchController,
            ReceiptController,
            CampaignController,
            CompatKeyController,
            CredentialController,
            DeadLetterController,
            KeyController,
            PolicyController,
            RealtimeController,
            TemplateController,
            WebhookController,
            providers_health,
        ],
        before_request=_before_v1,
        dependencies={
            "app": Provide(provide_app, sync_to_thread=False),
            "key": Provide(provide_key, sync_to_thread=False),
        },
        security=[{"bearer": []}],
    )
    handlers: list[Any] = [healthz, healthz_head, readyz, metrics, openapi_json, v1]
    # Refuses (ConfigError) two front-ends, or one and the native API, answering one route.
    handlers += compat_routers(settings, native=[v1, Router("/", route_handlers=handlers[:5])])
    if realtime is not None:
        handlers.append(_socketio_mount(realtime))
    return Litestar(
        route_handlers=handlers,
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers=exception_handlers,
        lifespan=[lifespan],
        middleware=[_request_log, _requests_share, body_timeout(settings.server.body_timeout)],
        request_max_body_size=settings.server.max_body_bytes,
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="pushgate",
            version=__version__,
            description="Self-hosted push notification gateway: native API.",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="App API key")
                }
            ),
        ),
    )
