"""The APNs simulator: Apple's HTTP/2 provider API (shared/providers.md §1) on its own ports.

Served by :mod:`pushgate.lab.h2server` (HTTP/2 over TLS with ALPN, TLS without ALPN, and
cleartext h2c), because APNs is HTTP/2-only and changes ``SETTINGS_MAX_CONCURRENT_STREAMS``
per connection: one stream until a request with a valid token succeeds, then
:data:`OPEN_MAX_STREAMS`.

Checks, in APNs' order: method and path; authentication (the provider JWT: alg ES256, known
``kid``, ``iss`` = team id, signature with the written ``.p8``'s public key, ``iat`` no older
than one hour, and churn — a new JWT on a connection less than 20 minutes after the previous
one was accepted is ``429 TooManyProviderTokenUpdates``; or, with no ``authorization``, a
client certificate signed by the lab CA); headers (topic = bundle id + the push type's suffix,
push type, priority, ``apns-id``, expiration, collapse id ≤ 64 bytes); body (non-empty JSON
object, ≤ 4096 B or 5120 B for VoIP); per-token state; then faults. Accepted requests go to
the ledger with their headers and decoded payload.
"""

from __future__ import annotations

import asyncio
import re
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import msgspec
from cryptography import x509
from litestar import Request, Response, delete, get, put
from litestar.handlers import HTTPRouteHandler

from pushgate.lab.faults import ErrorKind
from pushgate.lab.h2server import ConnectionInfo, H2Request, H2Response, H2Server, H2Stats, tls_context
from pushgate.lab.responses import json_response
from pushgate.lab.state import LabState

__all__ = [
    "ApnsSimulator",
    "apns_handlers",
    "bind_listener",
    "listener_urls",
    "simulator",
    "start_listeners",
]

OPEN_MAX_STREAMS = 1000
JWT_MAX_AGE = 3600
JWT_CHURN_WINDOW = 20 * 60
LIMIT = 4096
VOIP_LIMIT = 5120

PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "location",
        "pushtotalk",
        "widgets",
        "controls",
    }
)
#: The topic suffix each push type requires (the rest use the bare bundle id).
SUFFIXES = {
    "voip": ".voip",
    "complication": ".complication",
    "fileprovider": ".pushkit.fileprovider",
    "liveactivity": ".push-type.liveactivity",
    "location": ".location-query",
    "pushtotalk": ".voip-ptt",
    "widgets": ".push-type.widgets",
}
_PATH_RE = re.compile(r"/3/device/([^/?]*)")
_TOKEN_RE = re.compile(r"(?:[0-9a-fA-F]{2}){32,100}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UID_OID = x509.ObjectIdentifier("0.9.2342.19200300.100.1.1")

_FAULT_ANSWERS: dict[ErrorKind, tuple[int, str]] = {
    "unregistered": (410, "Unregistered"),
    "invalid": (400, "BadDeviceToken"),
    "topic_mismatch": (400, "DeviceTokenNotForTopic"),
    "sender_mismatch": (400, "DeviceTokenNotForTopic"),
    "429": (429, "TooManyRequests"),
    "quota": (429, "TooManyRequests"),
    "500": (500, "InternalServerError"),
    "503": (503, "ServiceUnavailable"),
    "auth": (403, "InvalidProviderToken"),
    "expired_token": (403, "ExpiredProviderToken"),
    "too_large": (413, "PayloadTooLarge"),
}


class DeviceState(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /apns/devices/{token}``: make a token behave as APNs would for it."""

    state: str = "registered"  # registered | unregistered | other_topic
    #: ms since the epoch the token became invalid (``unregistered``; default: now).
    timestamp: int | None = None
    #: The topic the token really belongs to (``other_topic``).
    topic: str | None = None


@dataclass(slots=True)
class _Jwt:
    kid: str
    iss: str
    iat: int


@dataclass(slots=True)
class ApnsSimulator:
    """Everything the APNs simulator keeps; one per lab (``state.extras["apns"]``)."""

    lab: LabState
    stats: H2Stats = field(default_factory=H2Stats)
    #: Distinct JWTs that passed verification (their count is what tests read).
    jwts_seen: set[str] = field(default_factory=set)
    jwts_rejected: int = 0
    devices: dict[str, DeviceState] = field(default_factory=dict)
    _verified: dict[str, _Jwt] = field(default_factory=dict)
    server: H2Server | None = None
    #: SETTINGS_MAX_CONCURRENT_STREAMS after the first authenticated request (``PUT /apns/settings``).
    open_max_streams: int = OPEN_MAX_STREAMS

    # ------------------------------------------------------------------ serving

    def h2_server(self) -> H2Server:
        """The HTTP/2 server for this simulator (one stream per connection until authenticated)."""
        if self.server is None:
            self.server = H2Server(self.handle, initial_max_streams=1, stats=self.stats)
        return self.server

    def stats_document(self) -> dict[str, Any]:
        s = self.stats
        return {
            "jwts_seen": len(self.jwts_seen),
            "jwts_rejected": self.jwts_rejected,
            "connections": s.connections_total,
            "connections_open": s.connections_open,
            "max_concurrent_streams_observed": s.max_concurrent_streams_observed,
            "stream_limit_violations": s.stream_limit_violations,
            "requests": s.requests,
            "advertised_max_concurrent_streams": {"initial": 1, "authenticated": self.open_max_streams},
        }

    def reset_stats(self) -> None:
        self.stats.reset()
        self.jwts_seen.clear()
        self.jwts_rejected = 0

    # ------------------------------------------------------------------ request

    async def handle(self, req: H2Request, conn: ConnectionInfo) -> H2Response:
        """Answer one APNs request the way Apple's servers do."""
        apns_id = req.headers.get("apns-id") or str(uuid.uuid4())
        if req.method != "POST":
            return _error(405, "MethodNotAllowed", apns_id)
        match = _PATH_RE.fullmatch(req.path)
        if match is None:
            return _error(404, "BadPath", apns_id)
        token = match.group(1)
        if not token:
            return _error(400, "MissingDeviceToken", apns_id)
        if req.duplicates:
            return _error(400, "DuplicateHeaders", apns_id)

        creds = self.lab.credentials.apns
        auth = req.headers.get("authorization")
        if auth is not None:
            problem = self._check_jwt(auth, conn)
            if problem is not None:
                status, reason = problem
                return _error(status, reason, apns_id)
            allowed_base = creds.bundle_id
        elif conn.peer_cert is not None:
            uid = _cert_uid(conn.peer_cert)
            if uid is None:
                return _error(403, "BadCertificate", apns_id)
            allowed_base = uid
        else:
            return _error(403, "MissingProviderToken", apns_id)

        push_type = req.headers.get("apns-push-type", "alert")
        if push_type not in PUSH_TYPES:
            return _error(400, "InvalidPushType", apns_id)
        topic = req.headers.get("apns-topic")
        if topic is None:
            if auth is not None:
                return _error(400, "MissingTopic", apns_id)
            topic = allowed_base + SUFFIXES.get(push_type, "")
        if not topic.startswith(allowed_base):
            return _error(400, "TopicDisallowed" if auth is None else "BadTopic", apns_id)
        if topic != allowed_base + SUFFIXES.get(push_type, "") and push_type != "mdm":
            return _error(400, "BadTopic", apns_id)
        priority = req.headers.get("apns-priority", "10")
        if priority not in ("10", "5", "1") or (push_type == "background" and priority == "10"):
            return _error(400, "BadPriority", apns_id)
        if "apns-id" in req.headers and not _UUID_RE.fullmatch(req.headers["apns-id"]):
            return _error(400, "BadMessageId", apns_id)
        expiration = req.headers.get("apns-expiration")
        if expiration is not None and not expiration.isdigit():
            return _error(400, "BadExpirationDate", apns_id)
        if len(req.headers.get("apns-collapse-id", "").encode("utf-8")) > 64:
            return _error(400, "BadCollapseId", apns_id)
        if not req.body:
            return _error(400, "PayloadEmpty", apns_id)
        if len(req.body) > (VOIP_LIMIT if push_type == "voip" else LIMIT):
            return _error(413, "PayloadTooLarge", apns_id)
        try:
            payload = msgspec.json.decode(req.body)
        except msgspec.DecodeError:
            return _error(400, "BadPayload", apns_id)
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return _error(400, "BadPayload", apns_id)
        if not _TOKEN_RE.fullmatch(token):
            return _error(400, "BadDeviceToken", apns_id)

        device = self.devices.get(token.lower())
        if device is not None:
            if device.state == "unregistered":
                return _error(410, "Unregistered", apns_id, timestamp=device.timestamp)
            if device.state == "other_topic" and device.topic != topic:
                return _error(400, "DeviceTokenNotForTopic", apns_id)

        verdict = self.lab.faults.judge("apns", (token.lower(),))
        if verdict.latency_ms:
            await asyncio.sleep(verdict.latency_ms / 1000)
        if verdict.error is not None:
            status, reason = _FAULT_ANSWERS.get(verdict.error, (500, "InternalServerError"))
            if reason == "ExpiredProviderToken":
                conn.state["jwt_expired"] = True
            extra = {"retry-after": str(verdict.retry_after)} if verdict.retry_after is not None else None
            ts = int(time.time() * 1000) if status == 410 else None
            return _error(status, reason, apns_id, timestamp=ts, headers=extra)

        if not conn.state.get("authenticated"):
            # As APNs: the first successful request lifts the one-stream limit on this connection.
            conn.state["authenticated"] = True
            conn.set_max_concurrent_streams(self.open_max_streams)
        self.lab.ledger.record(
            "apns",
            token.lower(),
            headers={k: v for k, v in req.headers.items() if k.startswith("apns-")},
            payload=payload,
            apns_id=apns_id,
            auth="token" if auth is not None else "certificate",
            transport=("h2" if conn.tls else "h2c"),
        )
        return H2Response(200, [("apns-id", apns_id)])

    # ------------------------------------------------------------------ auth

    def _check_jwt(self, auth: str, conn: ConnectionInfo) -> tuple[int, str] | None:
        """``None`` when the provider token is acceptable on this connection, else (status, reason)."""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            self.jwts_rejected += 1
            return 403, "InvalidProviderToken"
        claims = self._verify(token)
        if claims is None:
            self.jwts_rejected += 1
            return 403, "InvalidProviderToken"
        if time.time() - claims.iat > JWT_MAX_AGE:
            if conn.state.get("jwt") == token:
                conn.state["jwt_expired"] = True
            return 403, "ExpiredProviderToken"
        kid = conn.state.get("kid")
        if kid is not None and kid != claims.kid:
            return 403, "UnrelatedKeyIdInToken"
        current = conn.state.get("jwt")
        if current != token:
            now = time.monotonic()
            if (
                current is not None
                and not conn.state.get("jwt_expired")
                and now - conn.state.get("jwt_since", 0.0) < JWT_CHURN_WINDOW
            ):
                return 429, "TooManyProviderTokenUpdates"
            conn.state.update(jwt=token, jwt_since=now, jwt_expired=False, kid=claims.kid)
        self.jwts_seen.add(token)
        return None

    def _verify(self, token: str) -> _Jwt | None:
        """Signature and claims, once per distinct JWT (a provider reuses one for ~45 min)."""
        hit = self._verified.get(token)
        if hit is not None:
            return hit
        creds = self.lab.credentials.apns
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != creds.key_id:
                return None
            claims = jwt.decode(
                token,
                creds.public_key,
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_exp": False, "verify_iat": False},
                issuer=creds.team_id,
            )
        except jwt.PyJWTError:
            return None
        iat = claims.get("iat")
        if not isinstance(iat, int):
            return None
        if len(self._verified) > 1024:
            self._verified.clear()
        result = self._verified[token] = _Jwt(kid=str(header["kid"]), iss=str(claims["iss"]), iat=iat)
        return result


def _cert_uid(der: bytes) -> str | None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    uids = cert.subject.get_attributes_for_oid(_UID_OID)
    if not uids:
        return None
    value = uids[0].value
    return value.decode() if isinstance(value, bytes) else value


def _error(
    status: int,
    reason: str,
    apns_id: str,
    *,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> H2Response:
    body: dict[str, Any] = {"reason": reason}
    if status == 410:
        body["timestamp"] = timestamp if timestamp is not None else int(time.time() * 1000)
    out = [("content-type", "application/json"), ("apns-id", apns_id)]
    out += list((headers or {}).items())
    return H2Response(status, out, msgspec.json.encode(body))


def simulator(lab: LabState) -> ApnsSimulator:
    """The lab's APNs simulator, created on first use."""
    sim = lab.extras.get("apns")
    if sim is None:
        sim = lab.extras["apns"] = ApnsSimulator(lab)
    assert isinstance(sim, ApnsSimulator)
    return sim


def apns_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """Control routes on the lab's HTTP port: stats and per-token state."""
    sim = simulator(lab)

    @get("/apns/stats")
    async def stats() -> Response[bytes]:
        return json_response(sim.stats_document())

    @delete("/apns/stats", status_code=204)
    async def reset_stats() -> None:
        sim.reset_stats()

    @put("/apns/settings")
    async def settings(request: Request) -> Response[bytes]:
        """``{"max_concurrent_streams": N}``: the limit new connections get once authenticated."""
        try:
            body = msgspec.json.decode(await request.body())
            value = int(body["max_concurrent_streams"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            return json_response({"error": 'body must be {"max_concurrent_streams": <int>=1>}'}, 400)
        if value < 1:
            return json_response({"error": "max_concurrent_streams must be >= 1"}, 400)
        sim.open_max_streams = value
        return json_response({"max_concurrent_streams": value})

    @put("/apns/devices/{token:str}")
    async def set_device(token: str, request: Request) -> Response[bytes]:
        try:
            spec = msgspec.json.decode(await request.body(), type=DeviceState)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return json_response({"error": str(exc)}, 400)
        if spec.state not in ("registered", "unregistered", "other_topic"):
            return json_response({"error": "state must be registered, unregistered or other_topic"}, 400)
        if spec.state == "unregistered" and spec.timestamp is None:
            spec.timestamp = int(time.time() * 1000)
        if spec.state == "other_topic" and not spec.topic:
            spec.topic = "com.example.other"
        sim.devices[token.lower()] = spec
        return json_response(msgspec.to_builtins(spec))

    @delete("/apns/devices", status_code=204)
    async def clear_devices() -> None:
        sim.devices.clear()

    return [stats, reset_stats, settings, set_device, clear_devices]


# --------------------------------------------------------------------------- listeners


def bind_listener(host: str, port: int, *, fallback: bool) -> socket.socket:
    """Bind a listening socket now, so its port is known before the config is written.

    With ``fallback`` (a default port, not one the user asked for) a busy port is replaced by
    any free one; the written ``pushgate-lab.toml`` always names the port actually bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if not fallback:
            sock.close()
            raise
        sock.bind((host, 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def listener_urls(
    first: socket.socket, second: socket.socket, public_host: str, *, tls: bool = False
) -> tuple[str, str]:
    """The origins of two listeners: ``(https://…, http://…)`` for APNs' TLS and h2c pair, or
    two ``https://`` ones with ``tls``."""
    host = f"[{public_host}]" if ":" in public_host and not public_host.startswith("[") else public_host
    return (
        f"https://{host}:{first.getsockname()[1]}",
        f"{'https' if tls else 'http'}://{host}:{second.getsockname()[1]}",
    )


async def start_listeners(lab: LabState, tls_sock: socket.socket, h2c_sock: socket.socket) -> H2Server:
    """Serve the simulator on both sockets (TLS + h2c) in the running loop.

    A lab started without a credentials directory still needs certificate files for its TLS
    context, so they go to a private temporary directory.
    """
    from pushgate.lab.apns_credentials import CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, write_apns

    creds = lab.credentials.apns
    if creds.directory is None or creds.server_cert is None:
        public_host = (urlsplit(lab.base_url).hostname or "127.0.0.1").strip("[]")
        write_apns(
            Path(tempfile.mkdtemp(prefix="pushgate-lab-apns-")),
            creds,
            *listener_urls(tls_sock, h2c_sock, public_host),
        )
    ctx = tls_context(
        str(creds.path(SERVER_CERT_FILE)), str(creds.path(SERVER_KEY_FILE)), str(creds.path(CA_FILE))
    )
    server = simulator(lab).h2_server()
    await server.listen(tls_sock, ctx)
    await server.listen(h2c_sock, None)
    return server
