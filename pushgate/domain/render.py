"""Turn a unified :class:`Notification` into each provider's wire payload. Pure: no I/O.

Rendering lives here rather than in the provider modules so admission can render and
size-check a publish (and reject it with 413/400) before anything is queued, without touching
credentials or the network. Provider modules only add the target, authenticate and send.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from pushgate.domain.notification import Action, FcmOverride, Notification, WebPushOverride

__all__ = [
    "LIMITS",
    "WEBPUSH_NOT_ON_CURVE",
    "WebPushRendered",
    "b64url_decode",
    "b64url_encode",
    "deep_merge",
    "endpoint_is_loopback_or_insecure",
    "parse_webpush_subscription",
    "render_fcm",
    "render_webpush",
    "validate_fcm_data",
    "webpush_subscription_fields",
    "webpush_token_string",
    "webpush_topic",
]

#: Payload limits in bytes. FCM counts the JSON ``message`` object (4096 B). Web Push counts
#: plaintext: a 4096-byte encrypted body leaves 4096 - 86 (header) - 16 (tag) - 1 (delimiter).
LIMITS: dict[str, int] = {"fcm": 4096, "webpush": 3993}

_json_encode = msgspec.json.Encoder().encode


# --------------------------------------------------------------------------- helpers


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in; neither input is modified.

    Override values win; nested dicts are merged key by key; a ``None`` in the override deletes
    the key. This is what lets a caller tweak one provider field (say ``android.priority``)
    without restating the whole rendered message, and remove a field pushgate would set.
    """
    out: dict[str, Any] = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            current = out.get(key)
            out[key] = deep_merge(current if isinstance(current, Mapping) else {}, value)
        else:
            out[key] = value
    return out


def b64url_encode(raw: bytes) -> str:
    """Unpadded base64url, the encoding every Web Push field uses."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Decode base64url, tolerating missing padding and the standard ``+``/``/`` alphabet.

    Browsers and libraries disagree on padding and on the alphabet; being lenient here avoids
    rejecting subscriptions that the push service would accept.
    """
    s = value.strip().replace("+", "-").replace("/", "_").rstrip("=")
    if len(s) % 4 == 1:
        raise ValueError("invalid base64url length")
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid base64url") from exc


_TOPIC_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")


def webpush_topic(collapse_key: str) -> str:
    """Map a collapse key onto a valid Web Push ``Topic`` header.

    RFC 8030 allows at most 32 base64url characters; Apple also base64url-decodes the topic
    and rejects lengths ≡ 1 (mod 4). A key that already fits is used as-is (readable in the
    push service's logs); anything else is replaced by a stable 32-char digest, so the same key
    always collapses onto the same topic.
    """
    if _TOPIC_RE.fullmatch(collapse_key) and len(collapse_key) % 4 != 1:
        return collapse_key
    return b64url_encode(hashlib.sha256(collapse_key.encode("utf-8")).digest())[:32]


def _apns_collapse_id(collapse_key: str) -> str:
    """APNs caps ``apns-collapse-id`` at 64 bytes; longer keys get a stable digest instead."""
    if len(collapse_key.encode("utf-8")) <= 64:
        return collapse_key
    return hashlib.sha256(collapse_key.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- FCM


_ANDROID_PRIORITY = {
    "min": "PRIORITY_MIN",
    "low": "PRIORITY_LOW",
    "default": "PRIORITY_DEFAULT",
    "high": "PRIORITY_HIGH",
    "max": "PRIORITY_MAX",
}


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that are set: providers apply their own defaults to the rest."""
    return {k: v for k, v in fields.items() if v is not None}


def _nest(**parts: dict[str, Any] | None) -> dict[str, Any]:
    """The non-empty parts: an empty object would override a provider default with nothing."""
    return {k: v for k, v in parts.items() if v}


def _fcm_data(n: Notification) -> dict[str, str]:
    data = dict(n.data) if n.data else {}
    # FCM data values must be strings: structured extras travel JSON-encoded.
    if n.actions:
        data["actions"] = _json_encode([_webpush_action(a) for a in n.actions]).decode()
    if n.url:
        data.setdefault("url", n.url)
    return data


def _fcm_android(n: Notification) -> dict[str, Any]:
    note = _present(
        sound=n.sound,
        channel_id=n.channel_id,
        click_action=n.click_action,
        notification_priority=_ANDROID_PRIORITY[n.channel_importance] if n.channel_importance else None,
        tag=n.thread_id,
    )
    android = _present(
        ttl=f"{n.ttl_seconds}s" if n.ttl_seconds is not None else None,
        priority={"high": "HIGH", "normal": "NORMAL"}.get(n.priority or ""),
        collapse_key=n.collapse_key,
    )
    return {**android, **_nest(notification=None if n.silent else note)}


def _fcm_apns(n: Notification, now: float | None) -> dict[str, Any]:
    expiration = None
    if n.ttl_seconds is not None:
        # APNs: 0 means "deliver now or never"; otherwise a UNIX time.
        issued = int(time.time() if now is None else now)
        expiration = "0" if n.ttl_seconds == 0 else str(issued + n.ttl_seconds)
    headers = _present(
        **{
            "apns-priority": {"high": "10", "normal": "5"}.get(n.priority or ""),
            "apns-collapse-id": _apns_collapse_id(n.collapse_key) if n.collapse_key is not None else None,
            "apns-expiration": expiration,
        }
    )
    shown = not n.silent
    aps = _present(
        **{
            "sound": n.sound if shown else None,
            "badge": n.badge,
            "category": n.category,
            "thread-id": n.thread_id,
            "interruption-level": n.interruption_level,
            "mutable-content": 1 if n.mutable_content or (n.image is not None and shown) else None,
        }
    )
    if n.silent:
        aps["content-available"] = 1
        headers["apns-push-type"] = "background"
        headers["apns-priority"] = "5"  # Apple rejects priority 10 for background pushes
    return _nest(
        headers=headers,
        payload={"aps": aps} if aps else None,
        fcm_options={"image": n.image} if n.image is not None and shown else None,
    )


def _fcm_webpush(n: Notification) -> dict[str, Any]:
    headers = _present(
        TTL=str(n.ttl_seconds) if n.ttl_seconds is not None else None,
        Urgency=n.priority,
        Topic=webpush_topic(n.collapse_key) if n.collapse_key is not None else None,
    )
    link = n.url or n.click_action
    actions = [{"action": a.id, "title": a.title} for a in n.actions or ()]
    return _nest(
        headers=headers,
        # FCM accepts only https links here.
        fcm_options={"link": link} if link is not None and link.startswith("https://") else None,
        notification={"actions": actions} if actions and not n.silent else None,
    )


def render_fcm(
    n: Notification, override: FcmOverride | None = None, *, now: float | None = None
) -> dict[str, Any]:
    """Render the FCM v1 ``message`` object, without its target.

    The sender adds ``token`` per device, so one rendering serves a whole fan-out. Only fields
    the notification sets are emitted: FCM and APNs apply their own defaults to the rest.
    ``apns-expiration`` is absolute, computed from ``now`` (default: the clock at admission),
    so a message queued for a while still expires ``ttl_seconds`` after it was published.
    """
    shown = None if n.silent else _present(title=n.title, body=n.body, image=n.image)
    msg = _nest(
        notification=shown,
        data=_fcm_data(n),
        android=_fcm_android(n),
        apns=_fcm_apns(n, now),
        webpush=_fcm_webpush(n),
    )
    if override is not None and override.message:
        msg = deep_merge(msg, override.message)
    return msg


_FCM_RESERVED_EXACT = frozenset({"from", "message_type"})
_FCM_RESERVED_PREFIXES = ("google", "gcm")


def validate_fcm_data(data: Mapping[str, Any] | None) -> None:
    """Reject ``data`` keys FCM reserves, so admission fails fast instead of every send failing.

    Firebase reserves ``from``, ``message_type`` and any key starting with ``google`` or
    ``gcm``; values must be strings. Raises :class:`ValueError` naming the key.
    """
    if not data:
        return
    for key, value in data.items():
        lowered = key.lower()
        if lowered in _FCM_RESERVED_EXACT or lowered.startswith(_FCM_RESERVED_PREFIXES):
            raise ValueError(
                f"data key {key!r} is reserved by FCM (reserved: 'from', 'message_type', "
                "keys starting with 'google' or 'gcm')"
            )
        if not isinstance(value, str):
            raise ValueError(f"data value for key {key!r} must be a string for FCM")


# --------------------------------------------------------------------------- Web Push


class WebPushRendered(msgspec.Struct, frozen=True):
    """A Web Push message before encryption: plaintext payload and the request headers.

    A msgspec Struct so it can be stored in a job and read back without a bespoke codec.
    Encryption happens per subscription in the provider, because every subscription has its
    own keys.
    """

    payload: bytes
    headers: dict[str, str]


def _webpush_action(a: Action) -> dict[str, Any]:
    """Shaped like the Notifications API's ``NotificationAction`` the service worker passes on."""
    out: dict[str, Any] = {"action": a.id, "title": a.title}
    if a.text_input is not None:
        out["type"] = "text"
        out["placeholder"] = a.text_input
    return out


def _webpush_payload(n: Notification) -> dict[str, Any]:
    """The JSON the service worker receives (its shape is ours: docs/mapping.md)."""
    tag = n.collapse_key if n.collapse_key is not None else n.thread_id
    payload = _present(
        title=n.title,
        body=n.body,
        data=dict(n.data) if n.data else None,
        image=n.image,
        badge=n.badge,
        sound=n.sound,
        tag=tag,
        url=n.url or n.click_action or None,
        actions=[_webpush_action(a) for a in n.actions] if n.actions else None,
        category=n.category,
        # The closest browser notion: the notification stays until the user acts on it.
        requireInteraction=True if n.interruption_level in ("time-sensitive", "critical") else None,
        silent=True if n.silent else None,
    )
    return payload


def _replace_headers(headers: dict[str, str], overrides: Mapping[str, str]) -> None:
    """Override headers replace ours case-insensitively; an empty value removes the header."""
    for name, value in overrides.items():
        lowered = name.lower()
        for existing in [h for h in headers if h.lower() == lowered]:
            del headers[existing]
        if value != "":
            headers[name] = value


def render_webpush(
    n: Notification, override: WebPushOverride | None = None, *, default_ttl: int = 86400
) -> WebPushRendered:
    """Render the JSON the service worker receives and the ``TTL``/``Urgency``/``Topic`` headers.

    ``TTL`` is mandatory in RFC 8030 (a push service answers 400 without it), so a default is
    always applied. Override headers replace ours case-insensitively; an empty value removes the
    header.
    """
    payload = _webpush_payload(n)
    if override is not None and override.payload:
        payload = deep_merge(payload, override.payload)
    headers: dict[str, str] = {
        "TTL": str(n.ttl_seconds if n.ttl_seconds is not None else default_ttl),
        "Urgency": "high" if n.priority == "high" else "normal",
    }
    if n.collapse_key is not None:
        headers["Topic"] = webpush_topic(n.collapse_key)
    if override is not None and override.headers:
        _replace_headers(headers, override.headers)
    return WebPushRendered(payload=_json_encode(payload), headers=headers)


# --------------------------------------------------------------------------- subscriptions


WEBPUSH_NOT_ON_CURVE = "keys.p256dh: not a point on the P-256 curve"


def parse_webpush_subscription(token: str | Mapping[str, Any]) -> dict[str, Any]:
    """Validate a browser ``PushSubscription`` (object or its JSON) and normalise it.

    Returns ``{"endpoint", "keys": {"p256dh", "auth"}}`` with keys re-encoded as unpadded
    base64url, so the same subscription always stores as the same token string (dedup works)
    and the sender never meets a key it cannot encrypt to. Raises :class:`ValueError` whose
    message names the offending field.
    """
    endpoint, raw_p256dh, raw_auth = webpush_subscription_fields(token)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_p256dh)
    except ValueError:
        raise ValueError(WEBPUSH_NOT_ON_CURVE) from None
    keys = {"p256dh": b64url_encode(raw_p256dh), "auth": b64url_encode(raw_auth)}
    return {"endpoint": endpoint, "keys": keys}


def webpush_subscription_fields(token: str | Mapping[str, Any]) -> tuple[str, bytes, bytes]:
    """``(endpoint, raw p256dh, raw auth)`` after every check of :func:`parse_webpush_subscription`
    but the curve check: the sender loads the point once for its own use (and reports
    :data:`WEBPUSH_NOT_ON_CURVE`) instead of loading it twice and re-encoding keys it decodes."""
    obj = token
    if isinstance(token, str):
        try:
            obj = json.loads(token)
        except ValueError as exc:
            raise ValueError(f"subscription: not valid JSON ({exc})") from None
    if not isinstance(obj, Mapping):
        raise ValueError("subscription: must be a JSON object with 'endpoint' and 'keys'")
    endpoint = obj.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError("endpoint: required string")
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("endpoint: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("endpoint: must be an absolute http(s) URL")
    keys = obj.get("keys")
    if not isinstance(keys, Mapping):
        raise ValueError("keys: required object with 'p256dh' and 'auth'")
    raw_p256dh = _b64url_key(keys, "p256dh")
    if len(raw_p256dh) != 65 or raw_p256dh[0] != 0x04:
        raise ValueError("keys.p256dh: must be a 65-byte uncompressed P-256 point (0x04 ...)")
    raw_auth = _b64url_key(keys, "auth")
    if len(raw_auth) != 16:
        raise ValueError(f"keys.auth: must decode to 16 bytes, got {len(raw_auth)}")
    return endpoint, raw_p256dh, raw_auth


def _b64url_key(keys: Mapping[str, Any], name: str) -> bytes:
    value = keys.get(name)
    if not isinstance(value, str):
        raise ValueError(f"keys.{name}: required base64url string")
    try:
        return b64url_decode(value)
    except ValueError:
        raise ValueError(f"keys.{name}: not valid base64url") from None


def webpush_token_string(sub: Mapping[str, Any]) -> str:
    """The stored token for a subscription: compact JSON in a fixed key order.

    A canonical string makes "same subscription registered twice" an equality check.
    """
    keys = sub["keys"]
    return json.dumps(
        {"endpoint": sub["endpoint"], "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def endpoint_is_loopback_or_insecure(endpoint: str) -> bool:
    """True unless ``endpoint`` is https on a public host.

    Used to refuse (or flag) subscriptions pointing at the operator's own network: a device
    registration must not turn pushgate into a request forwarder to internal services. No DNS
    lookup is made (pure function); only literal addresses and local names are recognised.
    """
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
    except ValueError:
        return True
    if parts.scheme != "https" or not host:
        return True
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (
        addr.is_loopback
        or addr.is_private
        or addr.is_link_local
        or addr.is_unspecified
        or addr.is_reserved
        or addr.is_multicast
    )
