"""The composition root: how one pushgate process is put together from its settings.

``pushgate serve`` (through ``server.create_app``'s lifespan), ``pushgate worker`` and the test
suite's gateway build the same objects in the same order here, so a new store or engine part is
wired once. Nothing below this module knows how the process was started.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from pushgate.api.connections import guarded_protocol
from pushgate.config import ConfigError, ServerSettings, Settings
from pushgate.domain.urls import UrlRefused, check_target
from pushgate.engine.backpressure import Backpressure
from pushgate.engine.providers import ProviderPool, provider_classes
from pushgate.engine.worker import Engine
from pushgate.providers import registry
from pushgate.providers.base import ProviderSettings
from pushgate.providers.http import create_transport
from pushgate.providers.outbound import OutboundPolicy
from pushgate.providers.transport import Transport
from pushgate.store.apps import AppStore
from pushgate.store.bindings import BindingStore
from pushgate.store.channels import ChannelStore
from pushgate.store.credentials import CredentialStore, credential_store
from pushgate.store.db import Database
from pushgate.store.devices import DeviceStore
from pushgate.store.memberships import Caps
from pushgate.store.policies import PolicyStore
from pushgate.store.publishes import PublishStore
from pushgate.store.publishes.policy import PolicyLoader
from pushgate.store.queue import JobQueue


@dataclass
class Runtime:
    """Everything a serving or working process holds for its lifetime."""

    settings: Settings
    db: Database
    transport: Transport
    apps: AppStore
    devices: DeviceStore
    channels: ChannelStore
    bindings: BindingStore
    publishes: PublishStore
    creds: CredentialStore
    #: The engine's pool when this process runs workers: credential changes made through the
    #: API then reach the instances the workers send with.
    pool: ProviderPool
    #: Admission's and ``/readyz``'s measurement of the queue.
    backpressure: Backpressure
    #: None in an API-only process (``serve --no-workers``).
    engine: Engine | None
    #: Categories, preferences, app and user policy (one per process: its snapshots are
    #: dropped by this process's own writes, which the planner then sees at once).
    policies: PolicyStore
    #: A publish's policy for planning (shared by admission and the engine's planner).
    policy_loader: PolicyLoader


def provider_transport(settings: Settings) -> Transport:
    """The production HTTP client, trusting ``engine.ca_file`` besides the system's roots (the lab's
    CA, or a corporate proxy's), connecting only where ``[outbound]`` and the lab flag allow, and
    reading at most ``engine.max_response_bytes`` of an answer."""
    e = settings.engine
    return create_transport(
        timeout=e.http_timeout,
        ca_file=e.ca_file,
        outbound=outbound_policy(settings),
        max_response_bytes=e.max_response_bytes,
    )


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """Where this process's provider requests may go: ``[outbound]`` and the lab flag
    (``devices.allow_loopback_endpoints``)."""
    return OutboundPolicy(
        settings.outbound.allowance(settings.devices.allow_loopback_endpoints),
        dns_cache_seconds=settings.outbound.dns_cache_seconds,
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, workers: bool, transport: Transport | None = None
) -> AsyncIterator[Runtime]:
    """Open the database (migrated when ``server.auto_migrate``), the provider transport, the
    stores and, with ``workers``, the engine (not started); close all of it on exit.

    ``transport``: what every provider sends through. By default the production HTTP client,
    built and closed here; a caller that passes one (a test's mock transport) owns and closes it.
    """
    db = Database(settings.database_url)
    given = transport
    transport = given or provider_transport(settings)
    engine: Engine | None = None
    try:
        if settings.server.auto_migrate:
            await db.migrate()
        policies = PolicyStore(db, settings.policy_config)
        loader = PolicyLoader(db, policies)
        engine = Engine(settings, db, transport, policy_loader=loader) if workers else None
        creds = engine.pool.creds if engine else credential_store(settings.secret_key, db)
        limits = settings.limits
        caps = Caps(limits.max_channels_per_device, limits.max_rows_per_request)
        yield Runtime(
            settings=settings,
            db=db,
            transport=transport,
            apps=AppStore(db),
            devices=DeviceStore(db, caps),
            channels=ChannelStore(db, caps),
            bindings=BindingStore(db, caps),
            publishes=PublishStore(db),
            creds=creds,
            pool=engine.pool if engine else ProviderPool(settings, transport, creds),
            backpressure=Backpressure(JobQueue(db), settings.limits, settings.apps),
            engine=engine,
            policies=policies,
            policy_loader=loader,
        )
    finally:
        if engine is not None:
            await engine.stop()
        if given is None:
            await transport.aclose()
        await db.dispose()


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The database at the newest schema, for the one-shot commands (``migrate``, ``apps``)."""
    db = Database(settings.database_url)
    try:
        await db.migrate()
        yield db
    finally:
        await db.dispose()


async def check_credentials(settings: Settings) -> None:
    """Build every configured provider once, so bad credentials stop start-up naming the key
    (``ConfigError``) instead of failing the first deliveries. A provider URL pushgate would
    refuse to connect to (plain http or a non-public address outside ``[outbound]``) stops it
    too: every delivery would otherwise fail with ``outbound_refused``."""
    transport = provider_transport(settings)
    classes = provider_classes()
    try:
        sections: list[tuple[str, str, ProviderSettings]] = [
            ("", name, sec)
            for name, sec in settings.provider_sections("", "default").items()
            if name in classes
        ]
        for app_name in settings.apps:
            sections += [
                (f"apps.{app_name}.", name, sec)
                for name, sec in settings.provider_sections("", app_name).items()
                if name in classes
            ]
        allow = settings.outbound.allowance(settings.devices.allow_loopback_endpoints)
        for prefix, name, sec in sections:
            for key, url in registry.get(name).urls(sec):
                try:
                    if url is not None:
                        check_target(url, allow)
                except UrlRefused as exc:
                    raise ConfigError(f"invalid config: {prefix}{name}.{key}: {exc}") from None
            try:
                inst = await classes[name].create(sec, transport)
                await inst.aclose()
            except Exception as exc:
                raise ConfigError(f"invalid config: {prefix}{exc}") from None
    finally:
        await transport.aclose()


def http_config(app: Any, *, host: str, port: int, server: ServerSettings | None = None) -> uvicorn.Config:
    """The HTTP server's settings, the same for ``pushgate serve`` and the tests' gateway: the
    connection limits of ``[server]`` (``api/connections.py``) and the trusted proxies."""
    server = server or ServerSettings()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=guarded_protocol(server),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=15,
        timeout_keep_alive=server.keep_alive_timeout,  # type: ignore[arg-type]  # any float works
        proxy_headers=bool(server.trusted_proxies),
        forwarded_allow_ips=server.trusted_proxies or None,
    )


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process would die
    "by signal" even though it drained cleanly; pushgate exits 0 after a clean drain instead."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def tune_gc() -> None:
    """Fewer cyclic-GC passes for the long-running processes.

    Dispatch allocates many short-lived objects (rows, requests, results); with the default
    threshold (700) generation-0 collections ran thousands of times per second. Measured on the
    e2e benchmark: about a tenth less CPU per push (docs/performance.md). Objects alive after
    start-up (modules, settings, the app) are frozen out of every later collection.
    """
    gc.freeze()
    # Generation 2 keeps its default (10): a higher one let cycles that outlive one young
    # collection (failed sends' tracebacks, tasks on timeouts) pile up for tens of minutes.
    gc.set_threshold(50_000, 50, 10)
