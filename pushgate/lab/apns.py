"""The APNs simulator: Apple's HTTP/2 provider API (docs/providers.md#apns) on its own ports.

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

from pushgate.lab.faults import ErrorKind
from pushgate.lab.h2server import ConnectionInfo, H2Request, H2Response, H2Server, H2Stats, tls_context
from pushgate.lab.listeners import listener_urls
from pushgate.lab.state import LabState

__all__ = [
    "ApnsSimulator",
    "DeviceState",
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
        """Answer one APNs request the way Apple's servers do, checking in Apple's order."""
        apns_id = req.headers.get("apns-id") or str(uuid.uuid4())
        try:
            token = _device_token(req)
            token_auth, allowed_base = self._authenticate(req, conn)
            push_type, topic = _topic(req, allowed_base, token_auth)
            _check_headers(req, push_type)
            payload = _payload(req, push_type)
            if not _TOKEN_RE.fullmatch(token):
                raise _Refusal(400, "BadDeviceToken")
            self._check_device(token.lower(), topic)
            await self._apply_faults(token.lower(), conn)
        except _Refusal as refusal:
            return _error(refusal.status, refusal.reason, apns_id, refusal.timestamp, refusal.headers)
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
            auth="token" if token_auth else "certificate",
            transport=("h2" if conn.tls else "h2c"),
        )
        return H2Response(200, [("apns-id", apns_id)])

    def _authenticate(self, req: H2Request, conn: ConnectionInfo) -> tuple[bool, str]:
        """``(token auth?, the bundle id the credential may push to)``: a provider JWT, or else
        the client certificate's subject UID."""
        auth = req.headers.get("authorization")
        if auth is not None:
            problem = self._check_jwt(auth, conn)
            if problem is not None:
                raise _Refusal(*problem)
            return True, self.lab.credentials.apns.bundle_id
        if conn.peer_cert is None:
            raise _Refusal(403, "MissingProviderToken")
        uid = _cert_uid(conn.peer_cert)
        if uid is None:
            raise _Refusal(403, "BadCertificate")
        return False, uid

    def _check_device(self, token: str, topic: str) -> None:
        device = self.devices.get(token)
        if device is None:
            return
        if device.state == "unregistered":
            raise _Refusal(410, "Unregistered", timestamp=device.timestamp)
        if device.state == "other_topic" and device.topic != topic:
            raise _Refusal(400, "DeviceTokenNotForTopic")

    async def _apply_faults(self, token: str, conn: ConnectionInfo) -> None:
        verdict = self.lab.faults.judge("apns", (token,))
        if verdict.latency_ms:
            await asyncio.sleep(verdict.latency_ms / 1000)
        if verdict.error is None:
            return
        status, reason = _FAULT_ANSWERS.get(verdict.error, (500, "InternalServerError"))
        if reason == "ExpiredProviderToken":
            conn.state["jwt_expired"] = True
        extra = {"retry-after": str(verdict.retry_after)} if verdict.retry_after is not None else None
        raise _Refusal(
            status, reason, timestamp=int(time.time() * 1000) if status == 410 else None, headers=extra
        )

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


class _Refusal(Exception):
    """An APNs error answer, raised by whichever check fails first."""

    def __init__(
        self, status: int, reason: str, *, timestamp: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.timestamp, self.headers = status, reason, timestamp, headers


def _device_token(req: H2Request) -> str:
    """Method, path and a token in it, and no repeated header."""
    if req.method != "POST":
        raise _Refusal(405, "MethodNotAllowed")
    match = _PATH_RE.fullmatch(req.path)
    if match is None:
        raise _Refusal(404, "BadPath")
    if not match.group(1):
        raise _Refusal(400, "MissingDeviceToken")
    if req.duplicates:
        raise _Refusal(400, "DuplicateHeaders")
    return match.group(1)


def _topic(req: H2Request, allowed_base: str, token_auth: bool) -> tuple[str, str]:
    """``(push type, topic)``: the topic must be the credential's bundle id plus the suffix the
    push type requires. Token auth must name it; a certificate implies its own."""
    push_type = req.headers.get("apns-push-type", "alert")
    if push_type not in PUSH_TYPES:
        raise _Refusal(400, "InvalidPushType")
    topic = req.headers.get("apns-topic")
    if topic is None:
        if token_auth:
            raise _Refusal(400, "MissingTopic")
        topic = allowed_base + SUFFIXES.get(push_type, "")
    if not topic.startswith(allowed_base):
        raise _Refusal(400, "BadTopic" if token_auth else "TopicDisallowed")
    if topic != allowed_base + SUFFIXES.get(push_type, "") and push_type != "mdm":
        raise _Refusal(400, "BadTopic")
    return push_type, topic


def _check_headers(req: H2Request, push_type: str) -> None:
    priority = req.headers.get("apns-priority", "10")
    if priority not in ("10", "5", "1") or (push_type == "background" and priority == "10"):
        raise _Refusal(400, "BadPriority")
    if "apns-id" in req.headers and not _UUID_RE.fullmatch(req.headers["apns-id"]):
        raise _Refusal(400, "BadMessageId")
    expiration = req.headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        raise _Refusal(400, "BadExpirationDate")
    if len(req.headers.get("apns-collapse-id", "").encode("utf-8")) > 64:
        raise _Refusal(400, "BadCollapseId")


def _payload(req: H2Request, push_type: str) -> dict[str, Any]:
    if not req.body:
        raise _Refusal(400, "PayloadEmpty")
    if len(req.body) > (VOIP_LIMIT if push_type == "voip" else LIMIT):
        raise _Refusal(413, "PayloadTooLarge")
    try:
        payload = msgspec.json.decode(req.body)
    except msgspec.DecodeError:
        raise _Refusal(400, "BadPayload") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        raise _Refusal(400, "BadPayload")
    return payload


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
