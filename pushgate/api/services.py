"""What the routers need, built once at startup and handed out as a Litestar dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from pushgate.api.auth import Gatekeeper
from pushgate.config import Settings
from pushgate.engine.backpressure import Backpressure
from pushgate.engine.providers import ProviderPool
from pushgate.engine.worker import Engine
from pushgate.realtime.gateway import RealtimeGateway
from pushgate.store.apps import ApiKey, App, AppStore
from pushgate.store.bindings import BindingStore
from pushgate.store.channels import ChannelStore
from pushgate.store.credentials import CredentialStore
from pushgate.store.db import Database
from pushgate.store.devices import DeviceStore
from pushgate.store.policies import PolicyStore
from pushgate.store.publishes import PublishStore
from pushgate.store.publishes.policy import PolicyLoader
from pushgate.store.realtime import RealtimeSecrets
from pushgate.store.templates import TemplateStore
from pushgate.store.webhooks import WebhookStore


@dataclass
class Services:
    settings: Settings
    db: Database
    apps: AppStore
    devices: DeviceStore
    channels: ChannelStore
    bindings: BindingStore
    publishes: PublishStore
    #: Which providers each app has credentials for (admission size-checks only those).
    pool: ProviderPool
    creds: CredentialStore
    #: Categories, preferences, quiet hours and the app's policy (``[policy]`` under the API's).
    policies: PolicyStore
    #: A publish's policy, for planning a small publish at admission.
    policy_loader: PolicyLoader
    #: Each app's connection-token secret (made on first use).
    realtime_secrets: RealtimeSecrets
    engine: Engine | None = None
    #: Admission's queue check (None: off).
    backpressure: Backpressure | None = None
    #: This process's socket.io server (None: ``[realtime] enabled = false``).
    realtime: RealtimeGateway | None = None
    #: Key cache and authentication throttles (``[auth]``), built from ``settings``.
    gate: Gatekeeper = field(init=False)
    #: Versioned notification templates (``/v1/templates``), over ``db``.
    templates: TemplateStore = field(init=False)
    #: The app's webhooks (``/v1/webhooks``).
    webhooks: WebhookStore = field(init=False)

    def __post_init__(self) -> None:
        self.gate = Gatekeeper(self.settings.auth)
        self.templates = TemplateStore(self.db)
        self.webhooks = WebhookStore(self.db)


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def provide_app(request: Request[Any, Any, Any], services: NamedDependency[Services]) -> App:
    """The app the request's key belongs to (set by ``api.auth.authenticate``).

    ``services`` is unused but makes this dependency come after ``services``: Litestar resolves
    dependencies of one level concurrently in an anyio task group, which cost ~10% of an
    admission's CPU; chained, each is awaited directly.
    """
    del services
    app: App = request.state.app
    return app


ServicesDep = NamedDependency[Services]
AppDep = NamedDependency[App]


def provide_key(request: Request[Any, Any, Any], app: NamedDependency[App]) -> ApiKey:
    """The key the request authenticated with (``app`` only orders it after that dependency)."""
    del app
    key: ApiKey = request.state.key
    return key


KeyDep = NamedDependency[ApiKey]
