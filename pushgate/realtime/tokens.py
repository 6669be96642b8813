"""Connection tokens: short-lived HS256 JWTs a client shows in the socket.io handshake.

An app's backend gets one from ``POST /v1/realtime/tokens`` (its API key) or signs it itself
with the app's realtime secret, so the secret never reaches a client. The claims are the
documented few: ``sub`` (the user), ``exp``, ``iss`` (the app, by name or id: it says whose
secret verifies the token) and optionally ``channels`` (those the session may join). PyJWT does
the signing and the checks (signature, ``exp`` with a small leeway, required claims).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
#: Clock skew tolerated on ``exp`` between the signer and this node.
LEEWAY_SECONDS = 10
MAX_CHANNELS = 100
MAX_NAME = 200


class TokenError(ValueError):
    """Why a token does not connect; the message is safe to show the client (no secret)."""


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
        raise TokenError('missing token: connect with auth: {"token": "<connection token>"}')
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise TokenError("token: not a JWT") from None
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise TokenError("token: no iss claim (the app's name or id)")
    found = await secret_of(issuer)
    if found is None:
        raise TokenError(f"token: unknown app {issuer[:MAX_NAME]!r} in iss")
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
        raise TokenError("token: expired; get a new one from POST /v1/realtime/tokens") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"token: {exc}") from None
    user = claims["sub"]
    if not isinstance(user, str) or not 0 < len(user) <= MAX_NAME:
        raise TokenError(f"token: sub must be the user, a string of 1-{MAX_NAME} characters")
    return Claims(app_id, user, float(claims["exp"]), _channels(claims.get("channels")))
