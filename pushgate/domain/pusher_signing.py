"""Pusher-style HMAC request signing, exactly as Sockudo checks it (docs/compat.md, Sockudo).

A signed request carries ``auth_key``, ``auth_timestamp`` (Unix seconds), ``auth_version`` and
``auth_signature`` in its query, plus ``body_md5`` on a POST with a body. The signature is
``hex(HMAC-SHA256(secret, METHOD "\\n" path "\\n" canonical_query))`` where the canonical query is
every query parameter but ``auth_signature`` (decoded values, lower-cased keys, sorted by key in
byte order, ``k=v`` joined with ``&``). Every parameter is signed, so a changed ``limit`` or
``mode`` is as wrong as a changed body. Pure functions: the HTTP side parses the query and finds
the secret; this module only decides.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

#: ``|now - auth_timestamp|`` may be at most this many seconds (Sockudo's window).
WINDOW_SECONDS = 600
#: The parameters every signed request carries.
REQUIRED = ("auth_key", "auth_timestamp", "auth_version", "auth_signature")
#: Methods whose requests have no body, so ``body_md5`` is refused on them.
_BODYLESS = frozenset({"GET", "DELETE", "HEAD"})


def canonical_query(params: Sequence[tuple[str, str]]) -> str:
    """``k=v&…`` of every parameter but ``auth_signature``: keys lower-cased, values as decoded,
    sorted by key bytes. A key given twice keeps its last value (as a map would)."""
    merged: dict[str, str] = {}
    for key, value in params:
        if key.lower() != "auth_signature":
            merged[key.lower()] = value
    return "&".join(f"{k}={merged[k]}" for k in sorted(merged, key=lambda k: k.encode()))


def string_to_sign(method: str, path: str, params: Sequence[tuple[str, str]]) -> str:
    return f"{method.upper()}\n{path}\n{canonical_query(params)}"


def sign(secret: str, method: str, path: str, params: Sequence[tuple[str, str]]) -> str:
    """The ``auth_signature`` a client sends for this request."""
    message = string_to_sign(method, path, params).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def body_md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def refusal(
    *,
    method: str,
    path: str,
    params: Sequence[tuple[str, str]],
    body: bytes,
    secret: str,
    now: float,
    window: int = WINDOW_SECONDS,
) -> str | None:
    """Why the request is not genuine (a message for the 401), or None when it is.

    The checks run in Sockudo's order; the signature comes last and is compared in constant
    time, so a caller learns nothing of the secret from how a wrong signature fails.
    """
    found = dict((k.lower(), v) for k, v in params)
    missing = [name for name in REQUIRED if not found.get(name)]
    if missing:
        return f"missing {', '.join(missing)} in the query string"
    try:
        timestamp = int(found["auth_timestamp"])
    except ValueError:
        return "auth_timestamp must be Unix seconds"
    if abs(now - timestamp) > window:
        return f"auth_timestamp is more than {window} s away from the server's time: check the clock"
    md5 = found.get("body_md5")
    if method.upper() in _BODYLESS or not body:
        if md5 is not None:
            return "body_md5 must not be sent with an empty body (nor on GET or DELETE)"
    elif md5 is None:
        return "body_md5 is required on a request with a body"
    elif not hmac.compare_digest(md5.lower().encode(), body_md5(body).encode()):
        return "body_md5 does not match the body"
    expected = sign(secret, method, path, params)
    if not hmac.compare_digest(found["auth_signature"].lower().encode(), expected.encode()):
        return "invalid auth_signature"
    return None
