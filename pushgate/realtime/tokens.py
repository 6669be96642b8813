"""Connection tokens: short-lived HS256 JWTs a client shows in the socket.io handshake.

An app's backend gets one from ``POST /v1/realtime/tokens`` (its API key) or signs it itself
with the app's realtime secret, so the secret never reaches a client. The claims are the
documented few: ``sub`` (the user), ``exp``, ``iss`` (the app, by name or id: it says whose
secret verifies the token) and optionally ``channels`` (those the session may join). PyJWT does
the signing and the checks (signature, ``exp`` with a small leeway, required claims).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
#: Clock skew tolerated on ``exp`` between the signer and this node.
LEEWAY_SECONDS = 10
MAX_CHANNELS = 100
MAX_NAME = 200


#: How long an ``iss`` resolved to an app (or to no app) is trusted without asking the database.
ISSUER_CACHE_SECONDS = 30.0
#: Issuers remembered at most (past it the cache starts over: memory stays bounded).
MAX_ISSUERS = 10_000


class TokenError(ValueError):
    """Why a token does not connect; the message is safe to show the client (no secret).
    ``guess``: the token may be forged (counted against the client's address like a wrong API
    key); an expired token was genuine once and a missing one cost nothing, so they are not."""

    def __init__(self, message: str, *, guess: bool = True) -> None:
        super().__init__(message)
        self.guess = guess


@dataclass(frozen=True, slots=True)
class Claims:
    app_id: str
    user: str
    expires_at: float
    #: Channels the session joins (none: only its user's room).
    channels: tuple[str, ...] = ()


def mint(secret: str, *, app_id: str, user: str, expires_at: float, channels: list[str] | None) -> str:
    claims: dict[str, Any] = {"sub": user, "iss": app_id, "exp": int(expires_at)}
    if channels:
        claims["channels"] = channels
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


#: ``iss`` (an app name or id) → ``(app id, its secret)``, or None for an unknown app.
SecretOf = Callable[[str], Awaitable[tuple[str, str] | None]]
#: ``iss`` → ``(app id, app name)`` read from the database, or None for no such app.
FindApp = Callable[[str], Awaitable[tuple[str, str] | None]]
#: ``(app id, app name)`` → the app's signing secret (configured, or stored and cached briefly).
SecretFor = Callable[[str, str], Awaitable[str]]


class IssuerCache:
    """Which app a token's ``iss`` names, misses included, for ``ISSUER_CACHE_SECONDS``: a
    reconnect storm or a flood of tokens naming made-up apps does not read the database per
    handshake. Concurrent handshakes naming one uncached issuer share one lookup."""

    def __init__(self, ttl: float = ISSUER_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[tuple[str, str] | None, float]] = {}
        self._loading: dict[str, asyncio.Task[tuple[str, str] | None]] = {}

    def known(self, issuer: str) -> bool:
        """Resolving ``issuer`` now reads nothing (it is cached, or its lookup is under way)."""
        hit = self._items.get(issuer)
        return (hit is not None and hit[1] > time.monotonic()) or issuer in self._loading

    async def resolve(self, issuer: str, find: FindApp) -> tuple[str, str] | None:
        hit = self._items.get(issuer)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        task = self._loading.get(issuer)
        if task is None:
            task = asyncio.ensure_future(find(issuer))
            self._loading[issuer] = task
            task.add_done_callback(lambda done: self._loaded(issuer, done))
        # Shielded: one handshake given up (its client left) does not cancel the others' lookup.
        return await asyncio.shield(task)

    def _loaded(self, issuer: str, task: asyncio.Task[tuple[str, str] | None]) -> None:
        self._loading.pop(issuer, None)
        if task.cancelled() or task.exception() is not None:  # retrieved: each waiter re-raises it
            return
        if len(self._items) >= MAX_ISSUERS:
            self._items.clear()
        self._items[issuer] = (task.result(), time.monotonic() + self.ttl)


def _channels(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_CHANNELS:
        raise TokenError(f"token: channels must be a list of at most {MAX_CHANNELS} names")
    if not all(isinstance(c, str) and 0 < len(c) <= MAX_NAME for c in raw):
        raise TokenError(f"token: each channel must be a string of 1-{MAX_NAME} characters")
    return tuple(raw)


async def verify(token: Any, secret_of: SecretOf) -> Claims:
    """The token's claims once its signature, expiry and shape check out (TokenError otherwise)."""
    if not isinstance(token, str) or not token:
        raise TokenError('missing token: connect with auth: {"token": "<connection token>"}', guess=False)
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise TokenError("token: not a JWT") from None
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise TokenError("token: no iss claim (the app's name or id)")
    if len(issuer) > MAX_NAME:
        raise TokenError(f"token: iss is longer than {MAX_NAME} characters; no app is named so")
    found = await secret_of(issuer)
    if found is None:
        raise TokenError(f"token: unknown app {issuer!r} in iss")
    app_id, secret = found
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_SECONDS,
            options={"require": ["sub", "exp", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token: expired; get a new one from POST /v1/realtime/tokens", guess=False) from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"token: {exc}") from None
    user = claims["sub"]
    if not isinstance(user, str) or not 0 < len(user) <= MAX_NAME:
        raise TokenError(f"token: sub must be the user, a string of 1-{MAX_NAME} characters")
    return Claims(app_id, user, float(claims["exp"]), _channels(claims.get("channels")))
