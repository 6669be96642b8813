"""Web Push: a browser-side subscription minter plus an RFC 8030 push service.

Subscriptions are minted on the lab's control port, with a fresh P-256 key pair and auth
secret the lab keeps, so it can decrypt what pushgate encrypts (RFC 8291) and record the
plaintext. Their endpoints name the push service on the lab's TLS port (HTTP/2 or 1.1 by ALPN,
as real push services serve). The push endpoint checks headers, VAPID, size and encryption
the way autopush does, and answers with autopush's error bodies
(`{"code", "errno", "error", "message"}`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
from typing import Any, Literal
from urllib.parse import urlsplit

import http_ece
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Request, Response, delete, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from pushgate.lab.credentials import b64url_decode, b64url_encode
from pushgate.lab.faults import ErrorKind, hostile_response
from pushgate.lab.responses import empty_response, json_response, transport_of
from pushgate.lab.state import LabState, Subscription
from pushgate.lab.vapid import VapidError, verify_vapid

MAX_BODY_BYTES = 4096
URGENCIES = ("very-low", "low", "normal", "high")
TOPIC_RE = re.compile(r"[A-Za-z0-9_\-]{1,32}")
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def autopush_error(
    status: int, errno: int, message: str, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """Autopush's error body shape, which pushgate's Web Push sender may log."""
    body = {"code": status, "errno": errno, "error": _REASONS[status], "message": message}
    return json_response(body, status, headers)


class SubscribeRequest(msgspec.Struct, forbid_unknown_fields=True):
    application_server_key: str | None = None
    #: Which push service origin the endpoint names: ``h2`` (HTTP/2 and 1.1, the default) or
    #: ``http1`` (a second push service, HTTP/1.1 only, on another port: another origin).
    listener: Literal["h2", "http1"] = "h2"


def mint_subscription(lab: LabState, application_server_key: bytes, listener: str = "h2") -> Subscription:
    """Create a subscription the way a browser would after `pushManager.subscribe()`."""
    sub_id = secrets.token_urlsafe(24)
    origin = lab.credentials.urls.http1 if listener == "http1" else lab.credentials.urls.h2
    sub = Subscription(
        id=sub_id,
        endpoint=f"{origin}/webpush/push/{sub_id}",
        private_key=ec.generate_private_key(ec.SECP256R1()),
        auth_secret=secrets.token_bytes(16),
        application_server_key=application_server_key,
    )
    lab.subscriptions[sub_id] = sub
    return sub


def subscription_json(sub: Subscription) -> dict[str, Any]:
    """The PushSubscription JSON a browser hands to the application server."""
    public = sub.private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "endpoint": sub.endpoint,
        "keys": {"p256dh": b64url_encode(public), "auth": b64url_encode(sub.auth_secret)},
    }


def decode_payload(plaintext: bytes) -> Any:
    """JSON when it is JSON, else text; undecodable bytes are kept as base64 text."""
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(plaintext).decode("ascii")
    try:
        return json.loads(text)
    except ValueError:
        return text


def aes128gcm_framing_ok(body: bytes) -> bool:
    """RFC 8188/8291 framing without decrypting: salt(16) rs(4) idlen(1)=65 keyid (an uncompressed
    P-256 point), then one record of at least a 16-byte tag plus a delimiter, within ``rs``."""
    if len(body) < 21 + 65 + 17 or body[20] != 65 or body[21] != 0x04:
        return False
    rs = int.from_bytes(body[16:20], "big")
    return 18 <= rs and len(body) - 86 <= rs


def check_headers(request: Request) -> Response[bytes] | dict[str, str | None]:
    """Validate TTL, Urgency and Topic; return an error answer or the headers as received."""
    ttl_values = request.headers.getall("ttl", [])
    if len(ttl_values) != 1 or not ttl_values[0].strip().isdigit():
        return autopush_error(400, 111, "Missing or invalid TTL header: must be one integer >= 0")
    urgency_values = request.headers.getall("urgency", [])
    if len(urgency_values) > 1 or (urgency_values and urgency_values[0].strip() not in URGENCIES):
        return autopush_error(400, 111, "Invalid Urgency header: one of very-low, low, normal, high")
    topic_values = request.headers.getall("topic", [])
    if len(topic_values) > 1 or (topic_values and not TOPIC_RE.fullmatch(topic_values[0].strip())):
        return autopush_error(400, 113, "Invalid Topic header: at most 32 base64url characters")
    return {
        "TTL": ttl_values[0].strip(),
        "Urgency": urgency_values[0].strip() if urgency_values else None,
        "Topic": topic_values[0].strip() if topic_values else None,
    }


def fault_response(error: ErrorKind, retry_after: int | None) -> Response[bytes]:
    """The push service's real answer for each injectable fault."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if error == "unregistered":
        return autopush_error(410, 103, "Subscription is no longer valid")
    if error == "invalid":
        return autopush_error(404, 102, "Subscription not found")
    if error in ("quota", "429"):
        return autopush_error(429, 999, "Too many requests", headers)
    if error == "500":
        return autopush_error(500, 999, "Internal server error", headers)
    if error == "503":
        return autopush_error(503, 201, "Service unavailable, back off", headers)
    return autopush_error(403, 109, "Invalid VAPID credentials")  # auth, sender_mismatch


def subscription_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """The browser's side (control routes): mint and drop subscriptions."""

    @post("/webpush/subscriptions")
    async def subscribe(request: Request) -> Response[bytes]:
        """Mint a subscription; its applicationServerKey defaults to the lab's VAPID key."""
        raw = await request.body()
        try:
            spec = msgspec.json.decode(raw, type=SubscribeRequest) if raw.strip() else SubscribeRequest()
            key = (
                b64url_decode(spec.application_server_key)
                if spec.application_server_key
                else lab.credentials.vapid_public_raw
            )
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
        except (msgspec.DecodeError, ValueError, binascii.Error) as exc:
            return json_response({"error": f"invalid request: {exc}"}, 400)
        return json_response(subscription_json(mint_subscription(lab, key, spec.listener)), 201)

    @delete("/webpush/subscriptions/{sub_id:str}", status_code=204)
    async def unsubscribe(sub_id: str) -> None:
        """Simulate the browser unsubscribing: later pushes get 410 Gone."""
        sub = lab.subscriptions.get(sub_id)
        if sub is not None:
            sub.gone = True

    return [subscribe, unsubscribe]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def read_body(lab: LabState, sub: Subscription, request: Request, body: bytes) -> Response[bytes] | Any:
    """The decrypted payload (None for an empty body), or the push service's refusal."""
    if len(body) > MAX_BODY_BYTES:
        return autopush_error(413, 104, f"Body is larger than {MAX_BODY_BYTES} bytes")
    if not body:
        return None
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding != "aes128gcm":
        return autopush_error(400, 110, "Content-Encoding must be aes128gcm for a non-empty body")
    if lab.ledger.lean:
        # Lean (benchmark) mode keeps no payloads, so it checks the aes128gcm framing
        # instead of paying a second ECDH per push; the full mode decrypts.
        return None if aes128gcm_framing_ok(body) else autopush_error(400, 110, _UNDECRYPTABLE)
    try:
        plaintext = http_ece.decrypt(
            body, private_key=sub.private_key, auth_secret=sub.auth_secret, version="aes128gcm"
        )
    except Exception:  # http_ece raises assorted errors for bad ciphertext
        return autopush_error(400, 110, _UNDECRYPTABLE)
    return decode_payload(plaintext)


_UNDECRYPTABLE = "Could not decrypt the aes128gcm body"


def push_service_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """The push service (RFC 8030), at the origin the subscriptions' endpoints name."""

    @post("/webpush/push/{sub_id:str}")
    async def push(request: Request, sub_id: str) -> Response[bytes] | Stream:
        """Receive one push message for a subscription."""
        sub = lab.subscriptions.get(sub_id)
        if sub is None:
            return autopush_error(404, 102, "Subscription not found")
        if sub.gone:
            return autopush_error(410, 103, "Subscription is no longer valid")
        headers = check_headers(request)
        if isinstance(headers, Response):
            return headers
        try:
            # The JWT's audience is the push service's own origin: the one the endpoint names.
            verify_vapid(
                request.headers.get("authorization"), _origin(sub.endpoint), sub.application_server_key
            )
        except VapidError as err:
            return autopush_error(err.status, 109, err.message)
        payload = read_body(lab, sub, request, await request.body())
        if isinstance(payload, Response):
            return payload
        verdict = lab.faults.judge("webpush", (sub.endpoint, sub.id))
        if verdict.latency_ms:
            await asyncio.sleep(verdict.latency_ms / 1000)
        if verdict.hostile is not None:
            return hostile_response(verdict.hostile)
        if verdict.error is not None:
            return fault_response(verdict.error, verdict.retry_after)
        message_id = secrets.token_urlsafe(16)
        lab.ledger.record(
            "webpush",
            sub.endpoint,
            subscription_id=sub.id,
            headers=headers,
            payload=payload,
            transport=transport_of(request),
        )
        location = f"{_origin(sub.endpoint)}/webpush/messages/{message_id}"
        return empty_response(201, {"Location": location, "TTL": str(headers["TTL"])})

    return [push]
