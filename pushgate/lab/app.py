"""Builds the lab's ASGI applications from its parts.

Kept separate from `main` so tests or other programs can mount the lab in-process, and so the
apps are built from explicit state rather than globals. One state backs several apps: the
control app on the cleartext port, and one app per TLS listener serving only the services the
real provider offers on that protocol, so a client that reaches a service the wrong way (in
cleartext, or over HTTP/2 where the provider has none) fails here as it would in production.
"""

from __future__ import annotations

from typing import Literal

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from pushgate.lab.admin import admin_handlers
from pushgate.lab.apns_admin import apns_handlers
from pushgate.lab.credentials import LabCredentials, ServiceUrls, generate_credentials
from pushgate.lab.fcm import fcm_handlers
from pushgate.lab.hms import hms_handlers
from pushgate.lab.ledger import Ledger
from pushgate.lab.mipush import mipush_handlers
from pushgate.lab.oauth import oauth_handlers
from pushgate.lab.state import LabState
from pushgate.lab.webpush import push_service_handlers, subscription_handlers
from pushgate.lab.wns import channel_handlers, wns_handlers

#: ``control``: the lab's own routes; ``h2``: services offering HTTP/2 (and 1.1); ``http1``:
#: services offering HTTP/1.1 only; ``all``: everything on one app (``--plain``).
Routes = Literal["all", "control", "h2", "http1"]


def build_state(
    base_url: str,
    credentials: LabCredentials | None = None,
    lean: bool = False,
    services: ServiceUrls | None = None,
) -> LabState:
    """Fresh lab state; generates in-memory credentials when none are given."""
    base_url = base_url.rstrip("/")
    return LabState(
        base_url=base_url,
        credentials=credentials or generate_credentials(base_url, services),
        ledger=Ledger(lean=lean),
    )


def route_handlers(state: LabState, routes: Routes) -> list[HTTPRouteHandler]:
    """The handlers one listener serves."""
    handlers: list[HTTPRouteHandler] = []
    if routes in ("all", "control"):
        handlers += [*admin_handlers(state), *subscription_handlers(state), *channel_handlers(state)]
        handlers += apns_handlers(state)
    if routes in ("all", "h2"):
        handlers += [*oauth_handlers(state), *fcm_handlers(state), *push_service_handlers(state)]
    if routes in ("all", "http1"):
        handlers += [*hms_handlers(state), *wns_handlers(state), *mipush_handlers(state)]
        if routes == "http1":
            # A second push service origin (subscriptions minted with listener "http1").
            handlers += push_service_handlers(state)
    return handlers


def create_app(state: LabState, routes: Routes = "all") -> Litestar:
    """A Litestar app serving ``routes``.

    OpenAPI is off: the lab's contract is the providers' wire format, not a schema, and
    skipping it keeps startup fast.
    """
    return Litestar(route_handlers=route_handlers(state, routes), openapi_config=None, debug=False)
