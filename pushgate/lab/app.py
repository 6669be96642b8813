"""Builds the lab's ASGI application from its parts.

Kept separate from `main` so tests or other programs can mount the lab in-process, and so the
app is built from explicit state rather than globals.
"""

from __future__ import annotations

from litestar import Litestar

from pushgate.lab.admin import admin_handlers
from pushgate.lab.apns import apns_handlers
from pushgate.lab.credentials import LabCredentials, generate_credentials
from pushgate.lab.fcm import fcm_handlers
from pushgate.lab.hms import hms_handlers
from pushgate.lab.ledger import Ledger
from pushgate.lab.mipush import mipush_handlers
from pushgate.lab.oauth import oauth_handlers
from pushgate.lab.state import LabState
from pushgate.lab.webpush import webpush_handlers
from pushgate.lab.wns import wns_handlers


def build_state(base_url: str, credentials: LabCredentials | None = None, lean: bool = False) -> LabState:
    """Fresh lab state; generates in-memory credentials when none are given."""
    base_url = base_url.rstrip("/")
    return LabState(
        base_url=base_url,
        credentials=credentials or generate_credentials(base_url),
        ledger=Ledger(lean=lean),
    )


def create_app(state: LabState) -> Litestar:
    """The Litestar app serving every simulator plus the control routes.

    OpenAPI is off: the lab's contract is the providers' wire format, not a schema, and
    skipping it keeps startup fast.
    """
    handlers = [
        *admin_handlers(state),
        *oauth_handlers(state),
        *fcm_handlers(state),
        *webpush_handlers(state),
        *apns_handlers(state),
        *hms_handlers(state),
        *wns_handlers(state),
        *mipush_handlers(state),
    ]
    return Litestar(route_handlers=handlers, openapi_config=None, debug=False)
