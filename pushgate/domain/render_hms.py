"""Huawei Push Kit v1 rendering (docs/providers.md#hms; the field table is in docs/mapping.md).

The rendered value is the ``message`` object without its target: the provider adds ``token``
(a list of up to 1,000), ``topic`` or ``condition`` per request, so one rendering serves the
whole fan-out. Everything goes under ``android``: Push Kit's cross-platform ``notification``
block is a subset of ``android.notification``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec

from pushgate.domain import message_ids
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.render import deep_merge
from pushgate.domain.rendering import Renderer

__all__ = ["LIMIT", "MAX_TTL_SECONDS", "RENDERER", "hms_collapse_key", "normalize_token", "render"]

#: Body limit in bytes, target tokens not counted.
LIMIT = 4096
#: Push Kit keeps a message at most 15 days.
MAX_TTL_SECONDS = 15 * 86400
#: Push Kit shows at most three buttons.
MAX_BUTTONS = 3
MAX_TOKEN_CHARS = 4096

_json_encode = msgspec.json.Encoder().encode

#: ``channel_importance`` → ``android.notification.importance``. Push Kit knows LOW (marketing)
#: and NORMAL (service/communication); anything above the default is sent as NORMAL.
_IMPORTANCE = {"min": "LOW", "low": "LOW", "default": "NORMAL", "high": "NORMAL", "max": "NORMAL"}


def hms_collapse_key(key: str) -> int:
    """Push Kit's ``collapse_key`` is an integer: -1 (keep all), 0 (latest only) or a group 1-100.

    A key that already is such a number is used as-is; any other string maps onto a stable group
    1-100, so the same key always collapses into the same group (different keys may share one).
    """
    try:
        value = int(key)
    except ValueError:
        value = None
    if value is not None and -1 <= value <= 100 and str(value) == key.strip():
        return value
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big") % 100 + 1


def _click_action(n: Notification) -> dict[str, Any]:
    """Tap behaviour: ``url`` opens a web page (type 2), ``click_action`` an intent or an action
    (type 1), otherwise the app (type 3). Push Kit requires one on every notification."""
    if n.url:
        return {"type": 2, "url": n.url}
    if n.click_action:
        if n.click_action.startswith("intent:") or "#Intent;" in n.click_action:
            return {"type": 1, "intent": n.click_action}
        return {"type": 1, "action": n.click_action}
    return {"type": 3}


def _sound(sound: str | None) -> dict[str, Any]:
    if sound is None:
        return {}
    if sound == "default":
        return {"default_sound": True}
    return {"sound": sound, "default_sound": False}


def _note(n: Notification) -> dict[str, Any]:
    """``android.notification``: what the device shows."""
    note: dict[str, Any] = {"title": n.title or "", "body": n.body or "", "click_action": _click_action(n)}
    if n.image:
        note["image"] = n.image
    note.update(_sound(n.sound))
    if n.badge is not None:
        # ``class`` (the launcher activity) is app-specific: the provider adds hms.badge_class.
        note["badge"] = {"set_num": min(n.badge, 99)}
    if n.channel_id:
        note["channel_id"] = n.channel_id
    if n.channel_importance:
        note["importance"] = _IMPORTANCE[n.channel_importance]
    if n.collapse_key is not None:
        # The displayed notification is replaced by the next one with the same tag.
        note["tag"] = n.collapse_key
    if n.thread_id:
        note["group"] = n.thread_id
    if n.actions:
        note["buttons"] = [
            {
                "name": a.title[:40],
                "action_type": 0,
                "data": json.dumps({"action_id": a.id}, separators=(",", ":")),
            }
            for a in n.actions[:MAX_BUTTONS]
        ]
    return note


def _android(n: Notification) -> dict[str, Any]:
    android: dict[str, Any] = {}
    if n.collapse_key is not None:
        android["collapse_key"] = hms_collapse_key(n.collapse_key)
    if n.priority is not None:
        android["urgency"] = "HIGH" if n.priority == "high" else "NORMAL"
    if n.ttl_seconds is not None:
        android["ttl"] = f"{min(n.ttl_seconds, MAX_TTL_SECONDS)}s"
    if not n.silent and (n.title or n.body):
        android["notification"] = _note(n)
    return android


def render(n: Notification, overrides: ProviderOverrides, now: float = 0.0) -> dict[str, Any]:
    """The Push Kit ``message`` (no target). ``now`` is unused: Push Kit's TTL is relative."""
    msg: dict[str, Any] = {}
    if n.data:
        # Push Kit's data is one string; the app receives it as-is.
        msg["data"] = json.dumps(n.data, separators=(",", ":"), ensure_ascii=False)
    elif n.silent:
        msg["data"] = "{}"
    android = _android(n)
    if android:
        msg["android"] = android
    override = overrides.hms
    if override is not None and override.message:
        msg = deep_merge(msg, override.message)
    return msg


#: ``"pushgate":{"p":…},`` inside ``data`` (a JSON string: each of its 6 quotes is escaped), plus
#: ``"data":"{}",`` for a message that had none.
_IDS_BYTES = message_ids.overhead(multicast=True) + 6 + len('"data":"{}",')


def size(message: dict[str, Any]) -> int:
    """Compact JSON bytes of the message without its target, as Push Kit counts them, with the
    longest publish id counted (docs/receipts.md)."""
    body = {k: v for k, v in message.items() if k not in ("token", "topic", "condition")}
    return len(_json_encode(body)) + _IDS_BYTES


def normalize_token(token: str, *, allow_lab: bool = False) -> str:
    """A Push Kit token: any non-empty string without whitespace, at most 4,096 characters.

    ``allow_lab`` is accepted for a uniform signature; HMS tokens are opaque everywhere.
    """
    token = token.strip()
    if not token:
        raise ValueError("HMS token must not be empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"HMS token must be at most {MAX_TOKEN_CHARS} characters")
    if any(c.isspace() for c in token):
        raise ValueError("HMS token must not contain whitespace")
    return token


def _preview(stamped: Any) -> dict[str, Any]:
    message, publish_id = message_ids.for_preview(stamped)
    if publish_id is not None:
        data = message.get("data")
        message = {
            **message,
            "data": message_ids.with_publish_id(data if isinstance(data, str) else "{}", publish_id),
        }
    return {
        "method": "POST",
        "url": "{base_url}/v1/{app_id}/messages:send",
        "headers": {"Authorization": "Bearer <access token>", "Content-Type": "application/json"},
        "body": {"validate_only": False, "message": {**message, "token": ["<up to 1000 device tokens>"]}},
    }


RENDERER = Renderer(name="hms", render=render, size=size, limit=lambda _r: LIMIT, preview=_preview)
