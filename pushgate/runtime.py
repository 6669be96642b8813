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

from pushgate.config import ConfigError, Settings
from pushgate.engine.backpressure import Backpressure
from pushgate.engine.providers import ProviderPool, provider_classes
from pushgate.engine.worker import Engine
from pushgate.providers.base import ProviderSettings
from pushgate.providers.http import create_transport
from pushgate.providers.transport import Transport
from pushgate.store.apps import AppStore
from pushgate.store.bindings import BindingStore
from pushgate.store.channels import ChannelStore
from pushgate.store.credentials import CredentialStore, credential_store
from pushgate.store.db import Database
from pushgate.store.devices import DeviceStore
from pushgate.store.publishes import PublishStore
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


def provider_transport(settings: Settings) -> Transport:
    """The production HTTP client, trusting ``engine.ca_file`` besides the system's roots (the lab's
    CA, or a corporate proxy's)."""
    return create_transport(timeout=settings.engine.http_timeout, ca_file=settings.engine.ca_file)


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
        engine = Engine(settings, db, transport) if workers else None
        creds = engine.pool.creds if engine else credential_store(settings.secret_key, db)
        yield Runtime(
            settings=settings,
            db=db,
            transport=transport,
            apps=AppStore(db),
            devices=DeviceStore(db),
            channels=ChannelStore(db),
            bindings=BindingStore(db),
            publishes=PublishStore(db),
            creds=creds,
            pool=engine.pool if engine else ProviderPool(settings, transport, creds),
            backpressure=Backpressure(JobQueue(db), settings.limits, settings.apps),
            engine=engine,
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
    (``ConfigError``) instead of failing the first deliveries."""
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
        for prefix, name, sec in sections:
            try:
                inst = await classes[name].create(sec, transport)
                await inst.aclose()
            except Exception as exc:
                raise ConfigError(f"invalid config: {prefix}{exc}") from None
    finally:
        await transport.aclose()


def http_config(app: Any, *, host: str, port: int) -> uvicorn.Config:
    """The HTTP server's settings, the same for ``pushgate serve`` and the tests' gateway."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=15,
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
