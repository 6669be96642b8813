"""Client and device tokens as credentials of the API (docs/clients.md).

Both are HS256 JWTs signed with the app's realtime secret (the one connection tokens use:
``[realtime] token_secret`` or the stored one), so checking one costs no database read for the
app beyond what an API key costs: the app is cached here for ``CACHE_TTL`` like a resolved key,
and the secret for ``store/realtime.py:CACHE_SECONDS``. A device token's device is read on every
use (one primary-key read): deleting the device ends its token at once.

Claims: ``iss`` (the app's id), ``typ`` (``client`` or ``device``), ``aud`` (``pushgate:client``
or ``pushgate:device``: keeps them apart from connection tokens), ``exp``, ``sub`` (a client
token's user, absent for an anonymous device; a device token's device id) and ``channels`` (the
private channels the holder may join).

``api/auth.py`` calls :func:`verify_signature` inside the wrong-credential throttle (a forged
token counts against its address like a wrong key) and :func:`check_device` after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from litestar import Request

from pushgate.domain.client_scopes import AUDIENCE, MAX_TOKEN_CHANNELS, TokenKind
from pushgate.domain.registry import valid_channel
from pushgate.store.apps import App
from pushgate.store.private_channels import PrivateChannelStore

if TYPE_CHECKING:
    from pushgate.api.services import Services

ALGORITHM = "HS256"
#: Clock skew tolerated on ``exp`` between the signer and this node (as for connection tokens).
LEEWAY_SECONDS = 10
#: How long an app found by a token's ``iss`` is trusted without asking the database.
CACHE_TTL = 30.0
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class ClientPrincipal:
    """Who a request's client or device token says it is."""

    app: App
    kind: TokenKind
    #: The ``sub`` claim: a client token's user (None: anonymous), a device token's device id.
    subject: str | None
    #: The private channels the token lets its holder join.
    channels: frozenset[str]
    expires_at: float
    #: A device token's device's user (read with the device on each request).
    device_user: str | None = None

    @property
    def device_id(self) -> str | None:
        return self.subject if self.kind is TokenKind.DEVICE else None

    def rate_key(self, token: str) -> str:
        """The rate bucket: one per device (all its tokens), one per client token (its
        signature: anonymous client tokens have no subject to share a bucket by)."""
        if self.device_id is not None:
            return f"device:{self.app.id}:{self.device_id}"
        return f"client:{token.rpartition('.')[2]}"


class TokenRefused(Exception):
    """Why a token authenticates nothing; the message is safe to show (no secret, no claim
    values beyond the token's own). ``guess``: it may be forged (counted like a wrong key);
    an expired token or one whose device was deleted was genuine once, and is not."""

    def __init__(self, message: str, *, guess: bool) -> None:
        super().__init__(message)
        self.message = message
        self.guess = guess


class AppCache:
    def __init__(self) -> None:
        self._items: dict[str, tuple[App, float]] = {}

    def get(self, app_id: str) -> App | None:
        hit = self._items.get(app_id)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def put(self, app: App) -> None:
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[app.id] = (app, time.monotonic() + CACHE_TTL)


async def signing_secret(services: Services, app: App) -> str:
    """The app's realtime secret (as ``api/realtime.py:app_secret``; repeated here because that
    module's import of the services would import this one back)."""
    configured = services.settings.realtime_secret(app.id, app.name)
    if configured is not None:
        return configured
    return await services.realtime_secrets.secret(app.id)


def mint(
    secret: str,
    kind: TokenKind,
    *,
    app_id: str,
    subject: str | None,
    expires_at: float,
    channels: list[str] | frozenset[str] | None,
    jti: str | None = None,
) -> str:
    """``jti``: makes the token unique (two tokens minted alike in one second are otherwise equal)."""
    claims: dict[str, Any] = {"iss": app_id, "typ": str(kind), "aud": AUDIENCE[kind], "exp": int(expires_at)}
    if subject is not None:
        claims["sub"] = subject
    if jti is not None:
        claims["jti"] = jti
    if channels:
        claims["channels"] = sorted(channels)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _channels(raw: Any) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if (
        not isinstance(raw, list)
        or len(raw) > MAX_TOKEN_CHANNELS
        or not all(isinstance(c, str) and valid_channel(c) for c in raw)
    ):
        raise TokenRefused(
            f"channels must be a list of at most {MAX_TOKEN_CHANNELS} channel names", guess=True
        )
    return frozenset(raw)


async def _app(services: Services, cache: AppCache, issuer: Any) -> App:
    if not isinstance(issuer, str) or not 0 < len(issuer) <= 40:
        raise TokenRefused("no iss claim (the app's id)", guess=True)
    app = cache.get(issuer)
    if app is None:
        app = await services.apps.get(issuer)
        if app is None:
            raise TokenRefused("unknown app in iss", guess=True)
        cache.put(app)
    return app


async def verify_signature(services: Services, cache: AppCache, token: str) -> ClientPrincipal:
    """The token's claims once its signature, kind, expiry and shape check out (TokenRefused
    otherwise). The device a device token names is not looked at yet: :func:`check_device`."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise TokenRefused("not a JWT", guess=True) from None
    try:
        kind = TokenKind(str(unverified.get("typ")))
    except ValueError:
        raise TokenRefused(
            "typ must be client or device (a connection token opens only the socket.io gateway)",
            guess=True,
        ) from None
    app = await _app(services, cache, unverified.get("iss"))
    secret = await signing_secret(services, app)
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE[kind],
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "typ"]},
        )
    except jwt.ExpiredSignatureError:
        how = "POST /v1/client-tokens" if kind is TokenKind.CLIENT else "POST /v1/devices/{id}/token"
        raise TokenRefused(f"expired; the backend mints a new one ({how})", guess=False) from None
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(str(exc), guess=True) from None
    subject = claims.get("sub")
    if subject is not None and (not isinstance(subject, str) or not 0 < len(subject) <= MAX_NAME):
        raise TokenRefused(f"sub must be a string of 1-{MAX_NAME} characters", guess=True)
    if kind is TokenKind.DEVICE and subject is None:
        raise TokenRefused("a device token's sub is its device id", guess=True)
    return ClientPrincipal(app, kind, subject, _channels(claims.get("channels")), float(claims["exp"]))


async def check_device(services: Services, principal: ClientPrincipal) -> ClientPrincipal:
    """A device token whose device still exists, with the device's user; a client token as is.

    Any status counts as existing: a device whose push token a provider invalidated must still
    be able to send its new one (``PATCH``), which makes it active again."""
    if principal.device_id is None:
        return principal
    found = await PrivateChannelStore(services.db).device(principal.app.id, principal.device_id)
    if found is None:
        raise TokenRefused(
            "its device was deleted; register the device again (with a client token or the app key)",
            guess=False,
        )
    return ClientPrincipal(
        principal.app,
        principal.kind,
        principal.subject,
        principal.channels,
        principal.expires_at,
        device_user=found.user,
    )


async def authenticate_device_token(services: Services, token: str) -> tuple[str, str]:
    """``(app id, device id)`` of a valid device token whose device exists; TokenRefused
    otherwise. For routes that take a device token outside the ``/v1`` hook (receipts)."""
    principal = await check_device(services, await verify_signature(services, services.gate.apps, token))
    if principal.device_id is None:
        raise TokenRefused("a client token cannot do this: use the device token", guess=False)
    return principal.app.id, principal.device_id


def client_of(request: Request[Any, Any, Any]) -> ClientPrincipal | None:
    """The request's client or device token (None: it came with an API key)."""
    principal: ClientPrincipal | None = request.state.get("client")
    return principal
