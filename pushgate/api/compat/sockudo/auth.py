"""Who a Sockudo request is from: its Pusher-style signature, its push capability, its device.

Every route calls :func:`authorize` first, before its body is decoded: the signing key is
looked up by ``auth_key`` (``store/compat_keys.py``), the app must be the path's ``{appId}``
(its id or its name), and ``domain/pusher_signing.py`` decides whether the request is genuine.
Every refusal is a 401 in Sockudo's error shape and counts against the caller's address in the
same wrong-credential throttle as a wrong API key, so guessing secrets here is no cheaper than
guessing keys on ``/v1``. Device identity tokens are the native device tokens
(``api/client_auth.py``): the one a device got here also works on ``/v1`` and vice versa.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request

from pushgate.api.auth import _take_rate
from pushgate.api.client_auth import TokenRefused, mint, signing_secret, verify_signature
from pushgate.api.client_auth import check_device as device_principal
from pushgate.api.compat_keys import SYSTEM, compat_keys
from pushgate.api.errors import ApiError
from pushgate.api.services import Services
from pushgate.api.throttle import client_key, retry_after_header
from pushgate.domain import pusher_signing
from pushgate.domain.client_scopes import DEVICE_TTL_DEFAULT, TokenKind
from pushgate.store.apps import App
from pushgate.store.secretbox import SecretKeyError

CAPABILITY_HEADER = "x-sockudo-push-capability"
DEVICE_TOKEN_HEADER = "x-sockudo-device-identity-token"
ROTATE_HEADER = "x-sockudo-rotate-device-identity-token"


class Capability(StrEnum):
    ADMIN = "push-admin"
    SUBSCRIBE = "push-subscribe"


@dataclass(frozen=True, slots=True)
class Signed:
    """A request whose signature checked out: its app, capability and query parameters."""

    app: App
    capability: Capability
    params: dict[str, str]
    body: bytes

    @property
    def admin(self) -> bool:
        return self.capability is Capability.ADMIN


def auth_failed(message: str) -> ApiError:
    return ApiError(401, "auth_failed", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def _raw_path(request: Request[Any, Any, Any]) -> str:
    """The path as the client sent (and signed) it: still percent-encoded, with any prefix."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(request.scope["path"])


def _capability(request: Request[Any, Any, Any]) -> Capability:
    raw = request.headers.get(CAPABILITY_HEADER)
    if raw is None:
        return Capability.ADMIN
    try:
        return Capability(raw)
    except ValueError:
        raise forbidden("unknown push capability requested") from None


async def authorize(request: Request[Any, Any, Any], app_id: str, *, admin: bool = True) -> Signed:
    """The signed request's app and capability (``admin``: the route needs push-admin), or
    401/403/429 in Sockudo's shape. Reads the body (its ``body_md5`` is signed)."""
    services: Services = request.app.state.services
    gate = services.gate
    peer = request.scope.get("client")
    address = client_key(peer[0] if peer else None)
    blocked = gate.failures.retry_after(address)
    if blocked > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests with a wrong signature from this address; retry in {blocked:.0f} s",
            headers=retry_after_header(blocked),
        )
    query = request.scope.get("query_string", b"").decode("latin-1")
    pairs = parse_qsl(query, keep_blank_values=True)
    body = await request.body()
    if not gate.failures.reserve(address):
        raise ApiError(429, "rate_limited", "too many unrecognised keys at once; retry in a second")
    failed = True
    try:
        app = await _verify(services, request, app_id, pairs, body)
        failed = False
    finally:
        gate.failures.release(address, failed=failed)
    params = {k: v for k, v in pairs}
    if any("\x00" in k + v for k, v in pairs) or "%00" in _raw_path(request):
        # Genuine, but no id, name or cursor contains NUL (PostgreSQL refuses it in text).
        raise ApiError(400, "invalid_input", "NUL characters are not accepted in the path or query")
    _take_rate(gate, f"sockudo:{params['auth_key']}", "signing key")
    capability = _capability(request)
    if admin and capability is not Capability.ADMIN:
        raise forbidden("push-admin capability is required")
    return Signed(app, capability, params, body)


async def _verify(
    services: Services,
    request: Request[Any, Any, Any],
    app_id: str,
    pairs: list[tuple[str, str]],
    body: bytes,
) -> App:
    auth_key = dict(pairs).get("auth_key", "")
    if not auth_key:
        raise auth_failed("missing auth_key in the query string")
    if "\x00" in auth_key or len(auth_key) > 200:  # no key is: and PostgreSQL refuses NUL in text
        raise auth_failed("unknown auth_key (create one with POST /v1/compat/sockudo/keys)")
    try:
        found = await compat_keys(services).resolve(SYSTEM, auth_key)
    except SecretKeyError:
        raise auth_failed(
            "this key's secret cannot be read: the server's secret_key changed since it was made; "
            "create a new key (POST /v1/compat/sockudo/keys)"
        ) from None
    if found is None:
        raise auth_failed("unknown auth_key (create one with POST /v1/compat/sockudo/keys)")
    key, secret = found
    app = await services.apps.get(key.app_id)
    if app is None or app_id not in (app.id, app.name):
        raise auth_failed(f"auth_key does not belong to app {app_id!r}")
    why = pusher_signing.refusal(
        method=request.method,
        path=_raw_path(request),
        params=pairs,
        body=body,
        secret=secret,
        now=time.time(),
    )
    if why is not None:
        raise auth_failed(why)
    return app


def identity_token(request: Request[Any, Any, Any]) -> str:
    """The device identity token: its own header, or ``Authorization: Bearer``."""
    token = request.headers.get(DEVICE_TOKEN_HEADER)
    if token:
        return token
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise auth_failed("deviceIdentityToken is required")
    return value.strip()


async def check_device(
    services: Services, signed: Signed, request: Request[Any, Any, Any], device_id: str
) -> frozenset[str] | None:
    """A push-subscribe request must carry the identity token of the device it acts on. The
    private channels that token lets the device join (None: push-admin, which may join any)."""
    if signed.admin:
        return None
    try:
        token = identity_token(request)
        principal = await device_principal(
            services, await verify_signature(services, services.gate.apps, token)
        )
    except TokenRefused:
        raise auth_failed("invalid deviceIdentityToken") from None
    if (principal.app.id, principal.device_id) != (signed.app.id, device_id):
        raise auth_failed("invalid deviceIdentityToken")
    return principal.channels


async def new_identity_token(services: Services, app: App, device_id: str) -> str:
    """A device token for the device (the native one: ``POST /v1/devices`` answers the same)."""
    secret = await signing_secret(services, app)
    return mint(
        secret,
        TokenKind.DEVICE,
        app_id=app.id,
        subject=device_id,
        expires_at=time.time() + DEVICE_TTL_DEFAULT,
        channels=None,
        # A rotated token must differ from the one it replaces, even within the same second.
        jti=secrets.token_urlsafe(12),
    )
