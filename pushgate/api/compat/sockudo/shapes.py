"""Sockudo's camelCase wire shapes (as its code has them) and their native counterparts.

Decoding follows serde's defaults: unknown fields are ignored, a missing required one or a wrong
type is a 400 ``invalid_input``. The seed document's snake_case spellings (``device_id``,
``client_id``, ``provider_token``, ``idempotency_key``, ``payload.data``, ``run_at``) are taken
too, so code written from those docs works unchanged (docs/compat.md, Sockudo).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from pushgate.api.errors import ApiError, bad_request
from pushgate.providers import registry
from pushgate.store.devices import Device
from pushgate.store.registrations import token_hash

#: Sockudo's provider names ↔ pushgate's.
PROVIDERS = {"fcm": "fcm", "apns": "apns", "webPush": "webpush", "hms": "hms", "wns": "wns"}
SOCKUDO_PROVIDER = {v: k for k, v in PROVIDERS.items()}
#: Native provider → Sockudo ``transportType``.
TRANSPORT = {"fcm": "gcm", "apns": "apns", "webpush": "web", "hms": "hms", "wns": "wns"}
#: Sockudo platform → native platform (the Sockudo name is kept in meta when they differ).
PLATFORMS = {
    "android": "android",
    "ios": "ios",
    "browser": "web",
    "windows": "windows",
    "macos": "macos",
    "watchos": "ios",
    "tvos": "ios",
    "other": "other",
}
FormFactor = Literal["phone", "tablet", "desktop", "tv", "car", "watch", "embedded", "other"]
SockudoPlatform = Literal["android", "ios", "browser", "windows", "macos", "watchos", "tvos", "other"]
#: Meta keys that keep what the native device has no field for.
META_FORM_FACTOR = "sockudo.formFactor"
META_PLATFORM = "sockudo.platform"
MAX_METADATA_BYTES = 4096


class Base(msgspec.Struct, rename="camel", omit_defaults=True):
    """Unknown fields ignored, as serde does without ``deny_unknown_fields``."""


class GcmRecipient(Base, tag_field="transportType", tag="gcm"):
    registration_token: str


class ApnsRecipient(Base, tag_field="transportType", tag="apns"):
    device_token: str


class WebRecipient(Base, tag_field="transportType", tag="web"):
    endpoint: str
    p256dh: str
    auth: str


class HmsRecipient(Base, tag_field="transportType", tag="hms"):
    registration_token: str


class WnsRecipient(Base, tag_field="transportType", tag="wns"):
    channel_uri: str


PushRecipient = GcmRecipient | ApnsRecipient | WebRecipient | HmsRecipient | WnsRecipient


class DevicePush(Base):
    recipient: PushRecipient
    state: str | None = None


class DeviceDetails(Base):
    """``POST /deviceRegistrations``; ``appId`` and ``deviceSecret`` are the server's to set."""

    id: str | None = None
    client_id: str | None = None
    form_factor: FormFactor | None = None
    platform: SockudoPlatform | None = None
    metadata: Any = None
    timezone: str | None = None
    locale: str | None = None
    push: DevicePush | None = None
    # The seed document's spelling (sockudo.activateDevice).
    device_id: str | None = msgspec.field(default=None, name="device_id")
    client_id_: str | None = msgspec.field(default=None, name="client_id")
    provider_token: str | None = msgspec.field(default=None, name="provider_token")


def decode(body: bytes, kind: Any, what: str) -> Any:
    """The body as ``kind`` or a 400 ``invalid_input`` naming what was wrong."""
    if not body:
        raise bad_request(f"invalid JSON body: {what} expected")
    if b"\\u0000" in body:  # no id, name or text here may hold NUL (PostgreSQL refuses it)
        raise bad_request("invalid JSON body: NUL characters (\\u0000) are not accepted")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"invalid JSON body: {exc}") from None


def native_token(recipient: PushRecipient) -> tuple[str, str | dict[str, Any]]:
    """(native provider, token) of a Sockudo recipient."""
    match recipient:
        case GcmRecipient(registration_token=t):
            return "fcm", t
        case ApnsRecipient(device_token=t):
            return "apns", t
        case HmsRecipient(registration_token=t):
            return "hms", t
        case WnsRecipient(channel_uri=t):
            return "wns", t
        case WebRecipient():
            return "webpush", {
                "endpoint": recipient.endpoint,
                "keys": {"p256dh": recipient.p256dh, "auth": recipient.auth},
            }
    raise bad_request("push.recipient: unknown transportType")  # pragma: no cover (closed union)


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request("metadata: must be a JSON object")
    if len(msgspec.json.encode(raw)) > MAX_METADATA_BYTES:
        raise bad_request(f"metadata: larger than {MAX_METADATA_BYTES} bytes")
    return {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in raw.items()}


def _seed_provider(platform: str | None) -> str:
    """The seed document's ``provider_token`` has no provider: the platform's usual one."""
    return {"ios": "apns", "macos": "apns", "watchos": "apns", "tvos": "apns", "windows": "wns"}.get(
        platform or "", "fcm"
    )


def device_in(d: DeviceDetails) -> dict[str, Any]:
    """A native ``DeviceIn`` body (as a dict, for ``msgspec.convert``) from DeviceDetails."""
    device_id = d.id or d.device_id
    if not device_id:
        raise bad_request("id: required")
    if d.push is not None:
        provider, token = native_token(d.push.recipient)
    elif d.provider_token:
        provider, token = _seed_provider(d.platform), d.provider_token
    else:
        raise bad_request("push.recipient: required")
    platform = d.platform or {"apns": "ios", "wns": "windows", "webpush": "browser"}.get(provider, "android")
    meta = _metadata(d.metadata)
    if d.form_factor is not None:
        meta[META_FORM_FACTOR] = d.form_factor
    if PLATFORMS[platform] != platform:
        meta[META_PLATFORM] = platform
    body: dict[str, Any] = {
        "id": device_id,
        "provider": provider,
        "token": token,
        "platform": PLATFORMS[platform],
        "meta": meta,
    }
    user = d.client_id or d.client_id_
    if user is not None:
        body["user"] = user
    if d.locale:
        body["locale"] = d.locale
    if d.timezone:
        body["timezone"] = d.timezone
    return body


def identity_key(device: Device) -> str:
    spec = registry.find(device.provider)
    if spec is None or spec.token_parser is None:
        return device.token
    return spec.token_parser(device.token, True)[1]


def device_token_hash(device: Device) -> str:
    return token_hash(device.provider, identity_key(device))


def device_out(app_id: str, device: Device) -> dict[str, Any]:
    """Sockudo's DeviceResponse: never the token itself, only its hash."""
    meta = device.meta or {}
    platform = meta.get(META_PLATFORM) or {"web": "browser"}.get(device.platform, device.platform)
    default_form = "phone" if device.platform in ("android", "ios") else "desktop"
    out: dict[str, Any] = {
        "appId": app_id,
        "id": device.id,
        "formFactor": meta.get(META_FORM_FACTOR, default_form),
        "platform": platform,
        "timezone": device.timezone or "",
        "locale": device.locale or "",
        "lastActiveAtMs": int(device.last_seen_at * 1000),
        "pushState": "ACTIVE" if device.status == "active" else "FAILED",
        "pushFailureCount": 0 if device.status == "active" else 1,
        "recipient": {
            "transportType": TRANSPORT.get(device.provider, device.provider),
            "provider": SOCKUDO_PROVIDER.get(device.provider, device.provider),
            "tokenHash": device_token_hash(device),
        },
    }
    if device.user is not None:
        out["clientId"] = device.user
    return out


def not_supported(what: str) -> ApiError:
    """Sockudo's own "not implemented" answer for what pushgate has no counterpart of."""
    return ApiError(501, "not_implemented", f"{what} is not supported by pushgate (docs/compat.md, Sockudo)")


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    """Sockudo's ListResponse (snake_case in its code)."""
    return {"items": items, "next_cursor": next_cursor, "has_more": next_cursor is not None}
