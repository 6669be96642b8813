"""VAPID (RFC 8292) verification as a push service performs it.

Parsing is deliberately tolerant of spacing, because py-vapid writes `vapid t=…,k=…` with no
space after the comma; everything else is strict: ES256 under `k`, `aud` equal to the
endpoint's origin, an `exp` in the future and at most 24 h ahead, a mailto:/https: `sub`,
and `k` equal to the applicationServerKey the subscription was created with.
"""

from __future__ import annotations

import binascii
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from pushgate.lab.credentials import b64url_decode

MAX_EXP_AHEAD = 86_400
#: Verified headers kept for reuse (a sender reuses one VAPID JWT per origin for hours).
_VERIFIED_MAX = 4096
#: (header, origin, expected key) -> (claims, exp) of a header that passed every check.
_verified: dict[tuple[str, str, bytes], tuple[dict[str, object], float]] = {}


class VapidError(Exception):
    """Why a VAPID header was refused; `status` is 401 (missing) or 403 (invalid)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_authorization(header: str) -> tuple[str, str]:
    """Return (t, k) from `vapid t=<jwt>, k=<key>`, whatever the spacing or order."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "vapid":
        raise VapidError(f"Unsupported authorization scheme {scheme!r}; expected vapid", 401)
    params: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            params[name.strip().lower()] = value.strip().strip('"')
    if not params.get("t") or not params.get("k"):
        raise VapidError("vapid authorization needs both t and k parameters")
    return params["t"], params["k"]


def verify_vapid(
    header: str | None, origin: str, expected_key: bytes, now: float | None = None
) -> dict[str, object]:
    """Verify an Authorization header for a push to an endpoint at `origin`; return the claims.

    A header that passed is remembered until its ``exp``: senders reuse one JWT per origin for
    hours, and an ES256 verification per push would make the lab, not the sender, the bottleneck
    of a benchmark. The cached answer is exactly what a fresh check would give until ``exp``.
    """
    if not header:
        raise VapidError("Missing Authorization header (VAPID required)", 401)
    now = time.time() if now is None else now
    key = (header, origin, expected_key)
    hit = _verified.get(key)
    if hit is not None:
        if hit[1] > now:
            return hit[0]
        del _verified[key]
    claims = _verify_uncached(header, origin, expected_key, now)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[key] = (claims, float(claims["exp"]))  # type: ignore[arg-type]
    return claims


def _verify_uncached(header: str, origin: str, expected_key: bytes, now: float) -> dict[str, object]:
    token, key_text = parse_authorization(header)
    try:
        raw_key = b64url_decode(key_text)
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
    except (ValueError, binascii.Error) as exc:
        raise VapidError("vapid k is not a P-256 public key") from exc
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["ES256"],
            options={"require": ["exp"], "verify_aud": False, "verify_iat": False, "verify_nbf": False},
            leeway=0,
        )
    except jwt.ExpiredSignatureError as exc:
        raise VapidError("vapid JWT has expired") from exc
    except jwt.PyJWTError as exc:
        raise VapidError(f"vapid JWT rejected: {exc}") from exc
    if claims.get("aud") != origin:
        raise VapidError(f"vapid aud must be the endpoint origin {origin}")
    exp = claims["exp"]
    if not isinstance(exp, int | float) or exp > now + MAX_EXP_AHEAD:
        raise VapidError("vapid exp must be at most 24 hours ahead")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
        raise VapidError("vapid sub must be a mailto: or https: URL")
    if raw_key != expected_key:
        raise VapidError("vapid k does not match the subscription's applicationServerKey")
    return claims
