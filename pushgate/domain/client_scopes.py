"""What a client token and a device token may do: pure rules, no I/O (docs/clients.md).

A **client token** lets an app's client register one device without the app key: it opens
``POST /v1/devices`` and nothing else. A **device token** names one device (its ``sub``) and
opens only that device's own routes: read, update and delete it, (un)subscribe it, and post its
receipts. Every other request with either token is a 403 that says what the token may do.

A request naming another device is refused before any lookup, with the same answer whether that
device exists or not: a device token never learns which ids exist (no 404-vs-403 oracle).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class TokenKind(StrEnum):
    CLIENT = "client"
    DEVICE = "device"


#: The ``aud`` claim of each kind. Connection tokens (realtime/tokens.py) carry no ``aud``, and
#: PyJWT refuses a token with an ``aud`` where none is expected: a client or device token never
#: opens a socket.io session, and a connection token is never taken for a device token.
AUDIENCE = {TokenKind.CLIENT: "pushgate:client", TokenKind.DEVICE: "pushgate:device"}

#: A client token lives 1 hour unless asked otherwise, at most 7 days: it is meant to be used
#: once, right after the backend mints it (a user signs in, the app registers its device).
CLIENT_TTL_DEFAULT = 3600
CLIENT_TTL_MAX = 7 * 86_400
#: A device token lives 30 days unless asked otherwise, at most 365 days. It stops working
#: sooner when its device is deleted (checked on every use) or the app's secret is rotated.
DEVICE_TTL_DEFAULT = 30 * 86_400
DEVICE_TTL_MAX = 365 * 86_400
#: At most this many private channels in one token's ``channels`` claim.
MAX_TOKEN_CHANNELS = 100

_READS = frozenset({"GET", "HEAD"})


def looks_like_jwt(credential: str) -> bool:
    """A bearer credential of three dot-separated parts starting with a JSON header (``eyJ``):
    a token, not an API key (generated keys are ``pgk_…``; a chosen key is checked like a
    generated one, and one shaped like a JWT would be a strange choice, refused as a token)."""
    return credential.startswith("eyJ") and credential.count(".") == 2


def _device_path(path: str) -> tuple[str, str | None, str | None] | None:
    """``/v1/devices/{id}[/channels/{channel}]`` → (id, "channels" or other rest, channel)."""
    prefix = "/v1/devices/"
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix) :].rstrip("/")
    if not rest:
        return None
    device_id, _, tail = rest.partition("/")
    if not tail:
        return device_id, None, None
    what, _, channel = tail.partition("/")
    return device_id, what, channel or None


def client_refusal(method: str, path: str) -> str | None:
    """Why a client token may not make this request (None: it may)."""
    if method.upper() == "POST" and path.rstrip("/") == "/v1/devices":
        return None
    return (
        f"a client token may only register a device (POST /v1/devices), not {method.upper()} {path}; "
        "use the device token from that answer for the device's own routes, or the app key"
    )


def device_refusal(method: str, path: str, own_id: str) -> str | None:
    """Why the device token of device ``own_id`` may not make this request (None: it may)."""
    method = method.upper()
    if method == "POST" and path.rstrip("/") == "/v1/receipts":
        return None
    parsed = _device_path(path)
    if parsed is not None:
        device_id, what, channel = parsed
        device_route = (what is None and (method in _READS or method in ("PATCH", "DELETE"))) or (
            what == "channels" and channel is not None and method in ("PUT", "DELETE")
        )
        if device_route and device_id == own_id:
            return None
        if device_route:
            return (
                f"this device token acts only on its own device ({own_id}): it cannot read or "
                "change another device; the app key can"
            )
    return (
        f"a device token may only read, update and delete its own device (/v1/devices/{own_id}), "
        f"(un)subscribe it (PUT/DELETE /v1/devices/{own_id}/channels/{{channel}}) and post its "
        f"receipts, not {method} {path}; that needs the app key"
    )


def refused_joins(joining: Iterable[str], private: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The private channels among ``joining`` that the token's ``channels`` claim (``allowed``)
    does not name, sorted: a token may join a private channel only if its issuer allowed it.
    Leaving a channel is always allowed (a device may always stop receiving)."""
    return sorted(set(joining) & set(private) - set(allowed))


def joined(before: Iterable[str] | None, after: Iterable[str]) -> set[str]:
    """The channels ``after`` adds to ``before`` (a replacement list joins only what is new)."""
    return set(after) - set(before or ())
