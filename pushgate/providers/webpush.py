"""Web Push: RFC 8030 delivery, RFC 8291 aes128gcm encryption, RFC 8292 VAPID (docs/providers.md#web-push).

Every subscription has its own keys, so the payload is encrypted once per target (webpush_crypto,
with a fresh ephemeral key and salt each time) and POSTed to the subscription's opaque
endpoint. The VAPID JWT only depends on the endpoint's origin, so it is minted once per origin
and reused until it has less than an hour left.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_pem_private_key,
)

import pushgate.providers.settings as cfg
from pushgate.domain import message_ids, render_webpush
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.render import (
    WEBPUSH_NOT_ON_CURVE,
    WebPushRendered,
    b64url_decode,
    b64url_encode,
    parse_webpush_subscription,
    webpush_subscription_fields,
    webpush_token_string,
)
from pushgate.domain.urls import Allowance, UrlRefused, check_target, parse_target
from pushgate.providers import answers, webpush_crypto
from pushgate.providers.base import (
    Concurrency,
    CredentialInfo,
    Provider,
    ProviderConfigError,
    ProviderSettings,
    ProviderSpec,
    Target,
    digest,
)
from pushgate.providers.http import parse_retry_after
from pushgate.providers.outbound import SHORT_CODE, bounded, transport_failure
from pushgate.providers.transport import HttpRequest, HttpResponse, Transport, TransportError

__all__ = [
    "WebPushProvider",
    "classify_webpush_response",
    "encrypt_aes128gcm",
    "endpoint_origin",
    "load_vapid_private_key",
]

log = logging.getLogger(__name__)

#: VAPID tokens are valid 12 h (RFC 8292 allows ≤ 24 h; py-vapid's 24 h default sits on the edge).
VAPID_LIFETIME = 12 * 3600
#: Re-mint a cached VAPID token when less than this remains.
VAPID_MIN_REMAINING = 3600
RECORD_SIZE = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}

_json_decode = answers.decode_json


def encrypt_aes128gcm(
    plaintext: bytes,
    ua_public: bytes | ec.EllipticCurvePublicKey,
    auth_secret: bytes,
    *,
    salt: bytes | None = None,
    private_key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """Encrypt one Web Push message body (RFC 8291) for one subscription (webpush_crypto).

    The subscription's key is prepared once and cached, whether it comes as the raw point or
    as the parsed key object the subscription cache holds. ``salt`` and ``private_key`` exist
    only so a test can reproduce the RFC 8291 vector; in production both are left ``None`` and
    are generated fresh for every message (reusing them would let a push service correlate or,
    worse, decrypt messages).
    """
    return webpush_crypto.encrypt(
        plaintext, webpush_crypto.recipient(ua_public, auth_secret), salt=salt, private_key=private_key
    )


def endpoint_origin(endpoint: str) -> str:
    """The ``scheme://host[:port]`` origin of an endpoint, the VAPID ``aud`` (RFC 8292 §2)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


@dataclass(frozen=True, slots=True)
class _Subscription:
    endpoint: str
    #: ``scheme://host[:port]``, the VAPID ``aud``.
    origin: str
    #: The breaker's key (:func:`subscription_origin`); ``None`` for an endpoint it cannot parse.
    target_origin: str | None
    #: The key agreement's half, prepared here: the message encryption takes it as it is.
    recipient: webpush_crypto.Recipient


@functools.lru_cache(maxsize=16384)
def _prepare_subscription(token: str) -> _Subscription:
    """Parse and validate a stored subscription once; a hot cache across publishes.

    Decoding keys and loading the P-256 point is a measurable share of the per-message CPU,
    and the same subscriptions are sent to again and again. The point is loaded once, here
    (validation and encryption share it), and the breaker's origin is kept too, since the
    dispatcher asks for it for every message. An entry (with its OpenSSL key) costs about
    2.8 KB: 65,536 of them took 180 MB in the 1M-device run, so the cache is sized for an
    app's hot set (~45 MB), not for every subscriber of a big fan-out, which an LRU would
    cycle through anyway.
    """
    endpoint, ua_raw, auth = webpush_subscription_fields(token)
    try:
        recipient = webpush_crypto.load_recipient(ua_raw, auth)
    except ValueError:
        raise ValueError(WEBPUSH_NOT_ON_CURVE) from None
    try:
        target_origin: str | None = parse_target(endpoint).origin
    except ValueError:
        target_origin = None
    return _Subscription(
        endpoint=endpoint,
        origin=endpoint_origin(endpoint),
        target_origin=target_origin,
        recipient=recipient,
    )


def load_vapid_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """Load a VAPID key given as a base64url raw 32-byte scalar, base64url DER, or PEM.

    Those are the forms people have: web-push libraries print the raw scalar, py-vapid writes
    PEM (and DER). Raises :class:`ValueError` when it is none of them or not a P-256 key.
    """
    text = value.strip()
    if text.startswith("-----BEGIN"):
        if "\n" not in text:
            text = text.replace("\\n", "\n")
        key = load_pem_private_key(text.encode(), password=None)
    else:
        raw = b64url_decode(text)
        if len(raw) == 32:
            key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
        else:
            key = load_der_private_key(raw, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not a P-256 (prime256v1) private key")
    return key


def _error_details(resp: HttpResponse) -> tuple[str, str | None]:
    """(error_code, message) from an autopush ``{code, errno, error, message}`` or Apple ``{reason}``."""
    code = f"http_{resp.status}"
    if not resp.body:
        return code, None
    try:
        doc = _json_decode(resp.body)
    except msgspec.DecodeError:
        return code, resp.body[:300].decode("utf-8", "replace").strip() or None
    if not isinstance(doc, dict):
        return code, None
    reason = doc.get("reason")
    if isinstance(reason, str) and reason:
        # The server is whatever host the subscription names: its reason becomes the code only
        # when it looks like one (it is stored in a 64-character column).
        return (reason if SHORT_CODE.fullmatch(reason) else code), bounded(reason)
    message = doc.get("message") or doc.get("error")
    text = str(message) if message else None
    if doc.get("errno") is not None:
        text = f"errno {doc['errno']}: {text}" if text else f"errno {doc['errno']}"
    return code, text


def _message_id(resp: HttpResponse) -> str | None:
    location = resp.headers.get("location")
    if location:
        segment = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
        if segment:
            return segment
    if resp.body:
        try:
            doc = _json_decode(resp.body)
        except msgspec.DecodeError:
            return None
        if isinstance(doc, dict):
            mid = doc.get("message-id") or doc.get("message_id")
            if mid is not None:
                return str(mid)
    return None


def classify_webpush_response(resp: HttpResponse) -> SendResult:
    """Map a push service answer onto an :class:`Outcome` (docs/providers.md#web-push table)."""
    status = resp.status
    if status in (200, 201, 202):
        return SendResult(Outcome.SENT, provider_message_id=_message_id(resp))
    code, message = _error_details(resp)
    if status in (404, 410):
        return SendResult(Outcome.DEVICE_TERMINAL, error_code=code, error_message=message)
    if status in (401, 403):
        return SendResult(Outcome.CREDENTIAL, error_code=code, error_message=message)
    if status == 429 or status >= 500:
        return SendResult(
            Outcome.QUOTA if status == 429 else Outcome.PROVIDER_TRANSIENT,
            error_code=code,
            error_message=message,
            retry_after=parse_retry_after(resp.headers.get("retry-after")),
        )
    if status >= 400:  # 400 (bad TTL/Urgency/Topic/encryption), 413 (too large), other 4xx
        return SendResult(Outcome.PAYLOAD, error_code=code, error_message=message)
    return SendResult(Outcome.PROVIDER_TRANSIENT, error_code=code, error_message=message)


class WebPushSettings(ProviderSettings, forbid_unknown_fields=True, omit_defaults=True):
    """VAPID credentials for Web Push (``pushgate keys vapid`` generates a pair)."""

    vapid_subject: str | None = None
    vapid_private_key: str | None = None
    vapid_public_key: str | None = None
    concurrency: Concurrency = 200


def describe(s: WebPushSettings) -> CredentialInfo:
    public = s.vapid_public_key
    fp = f"vapid {public[:16]}" if public else digest(s.vapid_private_key or "")
    return CredentialInfo(fp, public_key=public)


def upload(body: dict[str, Any]) -> dict[str, Any]:
    """``{"generate": true}`` mints a fresh VAPID pair server-side (the private key never
    travels); the public key comes back in the credential's metadata."""
    if not body.pop("generate", False):
        return body
    if body.get("vapid_private_key"):
        raise ValueError("generate: give either generate: true or vapid_private_key, not both")
    key = ec.generate_private_key(ec.SECP256R1())
    body["vapid_private_key"] = b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))
    body["vapid_public_key"] = b64url_encode(
        key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    return body


def parse_token(token: str | dict[str, Any], allow_lab: bool | Allowance) -> tuple[str, str]:
    """A subscription (object or JSON string) → ``(compact JSON, endpoint)``: the endpoint is
    the device's identity, so a re-subscription with new keys updates the same device."""
    try:
        sub = parse_webpush_subscription(token)
    except ValueError as exc:
        raise ValueError(f"invalid Web Push subscription: {exc}") from None
    endpoint: str = sub["endpoint"]
    try:
        check_target(endpoint, allow_lab)
    except UrlRefused as exc:
        raise ValueError(f"Web Push endpoint: {exc}") from None
    return webpush_token_string(sub), endpoint


class WebPushProvider(Provider):
    """Sends to browser push services with one VAPID identity (one application server key)."""

    name: ClassVar[str] = "webpush"
    message_ids = True

    def __init__(
        self,
        *,
        transport: Transport,
        subject: str,
        private_key: ec.EllipticCurvePrivateKey,
        concurrency: int = 200,
        timeout: float | None = None,
    ) -> None:
        self._transport = transport
        self._subject = subject
        self._private_key = private_key
        self.public_key_b64 = b64url_encode(
            private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        )
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        #: origin → (Authorization header value, expiry as UNIX time)
        self._vapid_cache: dict[str, tuple[str, int]] = {}

    @classmethod
    async def create(
        cls, settings: WebPushSettings | Mapping[str, Any], transport: Transport
    ) -> WebPushProvider:
        """Check the VAPID identity; raises :class:`ProviderConfigError` naming the bad key."""
        s = cfg.section(WebPushSettings, "webpush", settings)
        subject = s.vapid_subject
        if not subject:
            raise ProviderConfigError("webpush.vapid_subject: required (a mailto: or https: contact)")
        if not subject.startswith(("mailto:", "https:")):
            raise ProviderConfigError(
                f"webpush.vapid_subject: must start with 'mailto:' or 'https:', got {subject!r}"
            )
        priv = s.vapid_private_key
        if not priv or not priv.strip():
            raise ProviderConfigError(
                "webpush.vapid_private_key: required (base64url 32-byte P-256 scalar or PEM)"
            )
        try:
            private_key = load_vapid_private_key(priv)
        except (ValueError, TypeError) as exc:
            raise ProviderConfigError(f"webpush.vapid_private_key: unusable key ({exc})") from None
        provider = cls(
            transport=transport,
            subject=subject,
            private_key=private_key,
            concurrency=s.concurrency,
            timeout=s.timeout,
        )
        pub = s.vapid_public_key
        if pub:
            try:
                pub_raw = b64url_decode(str(pub))
            except ValueError:
                raise ProviderConfigError("webpush.vapid_public_key: not valid base64url") from None
            if b64url_encode(pub_raw) != provider.public_key_b64:
                raise ProviderConfigError(
                    "webpush.vapid_public_key: does not match webpush.vapid_private_key"
                )
        return provider

    def _vapid_header(self, origin: str) -> str:
        now = int(time.time())
        cached = self._vapid_cache.get(origin)
        if cached is not None and cached[1] - now >= VAPID_MIN_REMAINING:
            return cached[0]
        exp = now + VAPID_LIFETIME
        token = jwt.encode(
            {"aud": origin, "exp": exp, "sub": self._subject}, self._private_key, algorithm="ES256"
        )
        header = f"vapid t={token}, k={self.public_key_b64}"
        self._vapid_cache[origin] = (header, exp)
        return header

    async def send_batch(self, rendered: Any, targets: Sequence[Target]) -> list[SendResult]:
        """Encrypt ``rendered.payload`` to each subscription and POST it, concurrently."""
        rendered, publish_id = message_ids.unwrap(rendered)
        if not isinstance(rendered, WebPushRendered):
            raise TypeError("WebPushProvider.send_batch expects a WebPushRendered")
        # The message ids: the JSON body's first key, the delivery id spliced per target.
        payload = (
            message_ids.whole(rendered.payload)
            if publish_id is None or not rendered.payload
            else message_ids.prepend(rendered.payload, message_ids.object_value(publish_id))
        )
        sends = (
            answers.one(self.name, self._send_one(rendered, t, payload.body(t.recipient_id))) for t in targets
        )
        return list(await asyncio.gather(*sends))

    async def _send_one(self, rendered: WebPushRendered, target: Target, payload: bytes) -> SendResult:
        try:
            sub = _prepare_subscription(target.token)
        except ValueError as exc:
            return SendResult(Outcome.DEVICE_TERMINAL, error_code="bad_subscription", error_message=str(exc))
        async with self._semaphore:
            headers = dict(rendered.headers)
            headers["Authorization"] = self._vapid_header(sub.origin)
            if payload:
                body = webpush_crypto.encrypt(payload, sub.recipient)
                headers["Content-Encoding"] = "aes128gcm"
                headers["Content-Type"] = "application/octet-stream"
            else:
                body = b""
            try:
                resp = await self._transport.request(
                    HttpRequest("POST", sub.endpoint, headers, body, self._timeout)
                )
            except TransportError as exc:
                return transport_failure(exc)
        result = classify_webpush_response(resp)
        if result.outcome is Outcome.CREDENTIAL:
            log.warning(
                "webpush: credential error %s from %s: %s",
                result.error_code,
                sub.origin,
                result.error_message,
            )
        return result


def subscription_origin(token: str) -> str | None:
    """The push service origin a stored subscription names (its breaker's key), read with the
    transport's own parser (``domain/urls.py``) so the breaker and the request agree on the host."""
    try:
        return _prepare_subscription(token).target_origin
    except ValueError:
        return None


SPEC = ProviderSpec(
    name="webpush",
    settings=WebPushSettings,
    provider=WebPushProvider,
    renderer=render_webpush.RENDERER,
    platforms=frozenset({"web", "android", "ios", "windows", "macos", "other"}),
    describe=describe,
    token_parser=parse_token,
    upload=upload,
    origin_of=subscription_origin,
)
