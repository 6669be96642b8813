"""One gorush notification → one native ``PublishIn`` (raw token recipients: nothing registered).

Every gorush field with a native counterpart becomes that field; what only one provider
understands goes into that provider's native override (``providers.apns.payload``/``headers``,
``providers.fcm.message``, ``providers.hms.message``), which the renderers deep-merge over what
they render, so a gorush payload reaches the provider as gorush would have built it. Fields of
another platform than the item's are ignored, as gorush ignores them. docs/compat.md lists what
has no counterpart.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from pushgate.api.compat.gorush.schema import PLATFORMS, GorushNotification
from pushgate.api.errors import ApiError, bad_request
from pushgate.api.schemas import PublishIn

#: gorush refuses more tokens than this in one Android or Huawei notification.
MAX_FCM_TOKENS = 500
_LIVE_ACTIVITY = (
    ("event", "event"),
    ("timestamp", "timestamp"),
    ("content_state", "content-state"),
    ("stale_date", "stale-date"),
    ("dismissal_date", "dismissal-date"),
    ("attributes_type", "attributes-type"),
    ("attributes", "attributes"),
    ("relevance_score", "relevance-score"),
)


def invalid(index: int, message: str) -> ApiError:
    return bad_request(f"notifications[{index}]: {message}")


def tokens_of(n: GorushNotification) -> list[str]:
    """The item's device tokens: ``tokens`` plus ``to`` (gorush appends it, ``CheckMessage``)."""
    return [*(n.tokens or ()), *([n.to] if n.to else [])]


def is_topic(n: GorushNotification) -> bool:
    """A provider-side audience: only FCM and HMS have topics and conditions (``IsTopic``)."""
    return n.platform in (2, 3) and bool(n.topic or n.condition)


def check(index: int, n: GorushNotification) -> None:
    """gorush's own refusals (``CheckMessage``), before anything is admitted."""
    if n.platform not in PLATFORMS:
        raise invalid(index, f"platform: {n.platform} is not 1 (iOS), 2 (Android) or 3 (Huawei)")
    tokens = tokens_of(n)
    if not tokens and not is_topic(n):
        raise invalid(index, "tokens must not be nil or empty")
    if any(not t for t in tokens):
        raise invalid(index, "the token must not be empty")
    if n.platform in (2, 3) and len(tokens) > MAX_FCM_TOKENS:
        raise invalid(index, f"tokens must not contain more than {MAX_FCM_TOKENS} elements")
    if n.app_id or n.app_secret:
        raise invalid(
            index,
            "app_id/app_secret: per-request Huawei credentials are not supported by pushgate; "
            "upload them once with PUT /v1/credentials/hms",
        )
    if n.priority is not None and n.priority not in ("high", "normal"):
        raise invalid(index, f"priority: {n.priority!r} is not 'high' or 'normal'")


def to_publish(index: int, n: GorushNotification) -> PublishIn:
    """The native publish for item ``index`` (checked by :func:`check` first); a 400 naming
    the item when the native rules refuse it."""
    provider = PLATFORMS[n.platform]
    body: dict[str, Any] = {
        "recipients": _recipients(n, provider),
        "notification": _notification(n),
    }
    override = {"apns": _apns, "fcm": _fcm, "hms": _hms}[provider](n)
    if override:
        body["providers"] = {provider: override}
    if n.dry_run:
        body["dry_run"] = True
    try:
        return msgspec.convert(body, PublishIn)
    except msgspec.ValidationError as exc:
        raise invalid(index, str(exc).replace("$.", "", 1)) from None


def _recipients(n: GorushNotification, provider: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "token", "provider": provider, "token": t} for t in tokens_of(n)]
    if n.platform in (2, 3):
        if n.topic:
            out.append({"type": f"{provider}_topic", "topic": n.topic})
        if n.condition:
            out.append({"type": f"{provider}_condition", "condition": n.condition})
    return out


def _notification(n: GorushNotification) -> dict[str, Any]:
    alert = n.alert
    out: dict[str, Any] = {
        "title": n.title or (alert.title if alert else None),
        "body": n.message or (alert.body if alert else None),
        "image": n.image,
        "badge": n.badge,
        "priority": n.priority,
        "category": n.category,
        "thread_id": n.thread_id,
        "interruption_level": n.interruption_level,
        "content_available": n.content_available or None,
        "mutable_content": n.mutable_content or None,
        "data": _string_data(n.data),
    }
    if isinstance(n.sound, str) and n.sound:
        out["sound"] = n.sound
    if n.platform == 1:
        out["collapse_key"] = n.collapse_id
    elif n.platform == 2:  # gorush's legacy FCM fields; HMS has its own (huawei_*)
        out["collapse_key"] = n.collapse_key
        out["ttl_seconds"] = n.time_to_live
    return {k: v for k, v in out.items() if v is not None}


def _string_data(data: dict[str, Any] | None) -> dict[str, str] | None:
    """FCM and HMS data are string maps: a non-string value travels as its JSON text."""
    if not data:
        return None
    return {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in data.items()}


def _apns(n: GorushNotification) -> dict[str, Any]:
    out: dict[str, Any] = {}
    headers = {
        name: value
        for name, value in (
            ("apns-topic", n.topic),
            ("apns-push-type", n.push_type),
            ("apns-expiration", None if n.expiration is None else str(n.expiration)),
        )
        if value
    }
    if headers:
        out["headers"] = headers
    payload: dict[str, Any] = {}
    aps = _aps(n)
    if aps:
        payload["aps"] = aps
    # gorush puts data keys at the payload's top level with their JSON types; the native data
    # is a string map, so non-string values are set here as they came.
    payload.update({k: v for k, v in (n.data or {}).items() if not isinstance(v, str)})
    if payload:
        out["payload"] = payload
    return out


def _aps(n: GorushNotification) -> dict[str, Any]:
    """What gorush sets in ``aps`` beyond the native fields: the whole alert, a critical
    sound, ``url-args`` and the Live Activity keys."""
    aps: dict[str, Any] = {}
    alert = msgspec.to_builtins(n.alert) if n.alert is not None else None
    if alert:
        aps["alert"] = alert
    if isinstance(n.sound, dict):
        aps["sound"] = n.sound
    elif n.name or n.volume:
        aps["sound"] = {k: v for k, v in (("name", n.name), ("volume", n.volume)) if v}
    if n.url_args:
        aps["url-args"] = n.url_args
    for attr, key in _LIVE_ACTIVITY:
        value = getattr(n, attr)
        if value is not None:
            aps[key] = value
    return aps


def _fcm(n: GorushNotification) -> dict[str, Any]:
    message = {
        k: v
        for k, v in (
            ("notification", n.notification),
            ("android", n.android),
            ("webpush", n.webpush),
            ("apns", n.apns),
            ("fcm_options", n.fcm_options),
        )
        if v
    }
    return {"message": message} if message else {}


def _hms(n: GorushNotification) -> dict[str, Any]:
    android: dict[str, Any] = {}
    if n.huawei_notification:
        android["notification"] = n.huawei_notification
    if n.huawei_ttl:
        android["ttl"] = n.huawei_ttl
    if n.huawei_collapse_key is not None:
        android["collapse_key"] = n.huawei_collapse_key
    if n.bi_tag:
        android["bi_tag"] = n.bi_tag
    if n.fast_app_target is not None:
        android["fast_app_target"] = n.fast_app_target
    message: dict[str, Any] = {}
    if android:
        message["android"] = android
    if n.huawei_data:
        message["data"] = n.huawei_data
    return {"message": message} if message else {}
