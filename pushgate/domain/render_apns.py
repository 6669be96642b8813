"""APNs rendering: the unified notification as an APNs request (headers + JSON payload).

Pure, like every renderer, so admission can size-check against APNs' limits (4,096 B; 5,120 B
for VoIP) and ``/v1/publish/preview`` can show the exact request. The two things rendering
cannot know are added by the provider per request: ``apns-topic`` needs the credential's bundle
id (rendering keeps only the suffix the push type requires) and ``apns-id`` is fresh per request.

Mapping (docs/mapping.md, "APNs"): title/body → ``aps.alert``; sound, badge, category,
thread_id, interruption_level → ``aps``; image or mutable_content → ``aps.mutable-content: 1``
(image also as custom key ``image_url`` for a notification service extension); actions →
``aps.category`` (a stable ``pushgate.actions.<hash>`` unless a category is given) plus custom
key ``pushgate_actions``; url/click_action → custom keys; data → custom top-level keys;
content_available/background (or a data-only notification) → a background push
(``{"aps": {"content-available": 1}}``, push type ``background``, priority 5).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import msgspec

from pushgate.domain import message_ids
from pushgate.domain.notification import ApnsOverride, Notification, ProviderOverrides
from pushgate.domain.render import deep_merge
from pushgate.domain.rendering import NotificationError, Renderer, RenderError

__all__ = [
    "LIMIT",
    "PUSH_TYPES",
    "RENDERER",
    "TOPIC_SUFFIXES",
    "VOIP_LIMIT",
    "ApnsRendered",
    "actions_category",
    "collapse_id",
    "normalize_token",
    "render",
    "topic_for",
]

LIMIT = 4096
VOIP_LIMIT = 5120

#: Every ``apns-push-type`` APNs accepts (docs/providers.md#apns).
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

#: ``apns-topic`` is the bundle id plus this suffix for push types that target an extension.
#: ``mdm`` uses the MDM certificate's topic, which only an ``apns-topic`` override can give.
TOPIC_SUFFIXES: dict[str, str] = {
    "voip": ".voip",
    "complication": ".complication",
    "fileprovider": ".pushkit.fileprovider",
    "liveactivity": ".push-type.liveactivity",
    "location": ".location-query",
    "pushtotalk": ".voip-ptt",
    "widgets": ".push-type.widgets",
}

_PRIORITIES = frozenset({"10", "5", "1"})
_TOKEN_RE = re.compile(r"[0-9a-f]{64,200}")
_json_encode = msgspec.json.Encoder().encode


class ApnsRendered(msgspec.Struct, frozen=True):
    """An APNs request minus the per-request parts (device path, ``apns-id``, auth).

    ``headers`` are lower-case ``apns-*`` names; ``apns-topic`` appears only when an override
    set it, otherwise the provider derives it from the bundle id and ``topic_suffix``.
    """

    headers: dict[str, str]
    payload: bytes
    push_type: str
    topic_suffix: str = ""


def normalize_token(token: str) -> str:
    """The canonical form of an APNs device token: lower-case hex, 64-200 characters.

    Device tokens are 32 bytes today but Apple says not to assume a length (Live Activity
    tokens are 80 bytes), so any even-length hex string in that range is accepted. Spaces and
    the angle brackets of ``NSData.description`` (``<abcd 1234 …>``) are tolerated because old
    SDKs still send them; the same token always stores as the same string, so dedup works.
    """
    cleaned = re.sub(r"[\s<>]", "", token).lower()
    if not _TOKEN_RE.fullmatch(cleaned):
        raise ValueError(
            "an APNs device token is a hex string of 64 to 200 characters "
            f"(got {len(cleaned)} characters{'' if re.fullmatch(r'[0-9a-f]*', cleaned) else ', not hex'})"
        )
    if len(cleaned) % 2:
        raise ValueError("an APNs device token must have an even number of hex digits")
    return cleaned


def collapse_id(collapse_key: str) -> str:
    """APNs caps ``apns-collapse-id`` at 64 bytes; longer keys become a stable 64-char digest,
    so the same key still collapses onto the same notification."""
    if len(collapse_key.encode("utf-8")) <= 64:
        return collapse_key
    return hashlib.sha256(collapse_key.encode("utf-8")).hexdigest()


def actions_category(actions: list[dict[str, Any]]) -> str:
    """A category id that is stable for one set of actions, so an app registering categories
    from ``pushgate_actions`` registers each distinct set once."""
    canonical = json.dumps(actions, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "pushgate.actions." + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def topic_for(bundle_id: str, rendered: ApnsRendered) -> str:
    """``apns-topic`` for this rendering: an override wins, else bundle id + push type suffix."""
    return rendered.headers.get("apns-topic") or bundle_id + rendered.topic_suffix


def _is_background(n: Notification) -> bool:
    """Silent, or nothing the user would see: APNs would otherwise deliver an invisible alert."""
    if n.silent:
        return True
    visible = n.title or n.body or n.sound or n.badge is not None or n.category or n.actions or n.image
    return not visible


def _alert_aps(n: Notification, custom: dict[str, Any]) -> dict[str, Any]:
    """The ``aps`` of a visible notification; actions and the image also add to ``custom``."""
    aps: dict[str, Any] = {}
    alert = {k: v for k, v in (("title", n.title), ("body", n.body)) if v is not None}
    if alert:
        aps["alert"] = alert
    if n.badge is not None:
        aps["badge"] = n.badge
    if n.interruption_level == "critical":
        # A critical alert only overrides mute/Do Not Disturb with the sound dictionary form.
        aps["sound"] = {"critical": 1, "name": n.sound or "default", "volume": 1.0}
    elif n.sound is not None:
        aps["sound"] = n.sound
    if n.thread_id is not None:
        aps["thread-id"] = n.thread_id
    if n.interruption_level is not None:
        aps["interruption-level"] = n.interruption_level
    if n.actions:
        actions = [msgspec.to_builtins(a) for a in n.actions]
        custom["pushgate_actions"] = actions
        aps["category"] = n.category or actions_category(actions)
    elif n.category is not None:
        aps["category"] = n.category
    if n.mutable_content or n.image:
        aps["mutable-content"] = 1
    if n.image is not None:
        custom["image_url"] = n.image
    return aps


def _payload(n: Notification, background: bool) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    if n.data:
        if "aps" in n.data:
            raise RenderError("notification.data: key 'aps' is reserved by APNs")
        custom.update(n.data)
    aps = {"content-available": 1} if background else _alert_aps(n, custom)
    if n.url is not None:
        custom["url"] = n.url
    if n.click_action is not None:
        custom["click_action"] = n.click_action
    return {"aps": aps, **custom}


def _headers(n: Notification, background: bool, now: float, override: ApnsOverride | None) -> dict[str, str]:
    headers: dict[str, str] = {"apns-push-type": "background" if background else "alert"}
    headers["apns-priority"] = "5" if background or n.priority == "normal" else "10"
    if n.ttl_seconds is not None:
        # APNs: 0 = deliver now or never; otherwise an absolute UNIX time, fixed at publish time.
        headers["apns-expiration"] = "0" if n.ttl_seconds == 0 else str(int(now) + n.ttl_seconds)
    if n.collapse_key is not None:
        headers["apns-collapse-id"] = collapse_id(n.collapse_key)
    for name, value in (override.headers or {}).items() if override is not None else ():
        if value == "":
            headers.pop(name.lower(), None)
        else:
            headers[name.lower()] = value
    return headers


def _push_type(headers: dict[str, str]) -> str:
    """The push type, once the headers (overrides included) are known to be ones APNs takes."""
    push_type = headers.get("apns-push-type", "alert")
    if push_type not in PUSH_TYPES:
        raise RenderError(
            f"providers.apns.headers: apns-push-type {push_type!r} is not one of "
            + ", ".join(sorted(PUSH_TYPES))
        )
    if "apns-priority" in headers and headers["apns-priority"] not in _PRIORITIES:
        raise RenderError("providers.apns.headers: apns-priority must be 10, 5 or 1")
    if len(headers.get("apns-collapse-id", "").encode("utf-8")) > 64:
        raise RenderError("providers.apns.headers: apns-collapse-id is longer than 64 bytes")
    return push_type


def render(n: Notification, overrides: ProviderOverrides | ApnsOverride | None, now: float) -> ApnsRendered:
    """Render ``n`` for APNs; ``now`` (the publish time) anchors ``apns-expiration``.

    Raises :class:`RenderError` for what APNs would reject with a 400 no retry can fix (an
    unknown push type or priority, a ``data`` key named ``aps``), so admission answers 400
    instead of every delivery failing later.
    """
    override = overrides.apns if isinstance(overrides, ProviderOverrides) else overrides
    background = _is_background(n)
    payload = _payload(n, background)
    if override is not None and override.payload:
        payload = deep_merge(payload, override.payload)
    headers = _headers(n, background, now, override)
    push_type = _push_type(headers)
    return ApnsRendered(
        headers=headers,
        payload=_json_encode(payload),
        push_type=push_type,
        topic_suffix=TOPIC_SUFFIXES.get(push_type, ""),
    )


def _render(n: Notification, o: ProviderOverrides, now: float) -> ApnsRendered:
    return render(n, o, now)


def _limit(r: ApnsRendered) -> int:
    return VOIP_LIMIT if r.push_type == "voip" else LIMIT


def _preview(stamped: Any) -> dict[str, Any]:
    r, publish_id = message_ids.for_preview(stamped)
    headers = dict(r.headers)
    headers.setdefault("apns-topic", "<bundle id>" + r.topic_suffix)
    headers["apns-id"] = "<uuid per request>"
    headers["authorization"] = "bearer <provider JWT> (token auth; absent with certificate auth)"
    try:
        body: Any = json.loads(r.payload)
    except ValueError:
        body = r.payload.decode(errors="replace")
    if publish_id is not None and isinstance(body, dict):
        body = {message_ids.KEY: message_ids.id_object(publish_id, message_ids.PREVIEW_DELIVERY_ID), **body}
    return {"method": "POST", "url": "{base_url}/3/device/<device token>", "headers": headers, "body": body}


def _check(n: Notification) -> None:
    reserved = message_ids.reserved_key_error(n.data)
    if reserved is not None:
        raise NotificationError("data", reserved)


#: The ids, a custom key next to ``aps`` (docs/receipts.md), counted with the longest ids.
_IDS_BYTES = message_ids.overhead()

RENDERER = Renderer(
    name="apns",
    render=_render,
    size=lambda r: len(r.payload) + _IDS_BYTES,
    limit=_limit,
    preview=_preview,
    check=_check,
)
