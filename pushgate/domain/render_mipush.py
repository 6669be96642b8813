"""Xiaomi MiPush v3 rendering (docs/providers.md#mipush; table in docs/mapping.md).

MiPush takes form fields, not JSON. The rendering holds every field except the targets
(``registration_id``) and ``restricted_package_name``, which the provider adds from its
credential, so one rendering serves every batch and every app.

``title`` (< 50 characters) and ``description`` (< 128) are **truncated** with an ellipsis rather
than rejected: a publish renders for every configured provider at admission, and a headline
that suits FCM or APNs must not fail the whole publish because MiPush shows less of it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec

from pushgate.domain import message_ids
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.rendering import Renderer

__all__ = [
    "LIMIT",
    "MAX_DESCRIPTION",
    "MAX_TITLE",
    "PACKAGE_PLACEHOLDER",
    "RENDERER",
    "MiPushRendered",
    "mipush_notify_id",
    "normalize_token",
    "render",
]

#: Bytes of ``payload`` (the app's data). MiPush documents "4 KB" without saying what counts.
LIMIT = 4096
#: MiPush requires title < 50 and description < 128 characters.
MAX_TITLE = 49
MAX_DESCRIPTION = 127
MAX_TOKEN_CHARS = 4096
#: Replaced by the credential's package name when sending (a bare sound name is an app resource).
PACKAGE_PLACEHOLDER = "{package_name}"
_NOTIFY_ID_RANGE = 2**31 - 1


class MiPushRendered(msgspec.Struct, frozen=True):
    """The form fields of ``/v3/message/regid`` without ``registration_id`` and the package."""

    fields: dict[str, str]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mipush_notify_id(collapse_key: str | None, now: float) -> int:
    """``notify_id``: MiPush replaces a shown notification with the next one of the same id.

    By default MiPush shows one notification per app, so a publish without a collapse key gets
    its own id (from its creation time); a collapse key maps onto a stable id (a number that
    fits is used as-is).
    """
    if collapse_key is None:
        return int(now * 1000) % _NOTIFY_ID_RANGE
    if collapse_key.isdigit() and int(collapse_key) < _NOTIFY_ID_RANGE:
        return int(collapse_key)
    return int.from_bytes(hashlib.sha256(collapse_key.encode("utf-8")).digest()[:4], "big") % _NOTIFY_ID_RANGE


def render(n: Notification, overrides: ProviderOverrides, now: float = 0.0) -> MiPushRendered:
    """Form fields for one notification; ``now`` is the publish time (for ``notify_id``)."""
    visible = not n.silent and bool(n.title or n.body)
    fields: dict[str, str] = {
        "pass_through": "0" if visible else "1",
        "payload": json.dumps(n.data or {}, separators=(",", ":"), ensure_ascii=False),
    }
    if visible:
        fields["title"] = _cut(n.title or n.body or "", MAX_TITLE)
        fields["description"] = _cut(n.body or n.title or "", MAX_DESCRIPTION)
        fields["notify_type"] = "6" if n.sound in ("", "none") else "-1"  # 6: vibrate + lights, no sound
        fields["notify_id"] = str(mipush_notify_id(n.collapse_key, now))
        if n.sound and n.sound not in ("default", "none"):
            fields["extra.sound_uri"] = (
                n.sound if "://" in n.sound else f"android.resource://{PACKAGE_PLACEHOLDER}/raw/{n.sound}"
            )
        if n.channel_id:
            fields["extra.channel_id"] = n.channel_id
        if n.url:
            fields["extra.notify_effect"] = "3"
            fields["extra.web_uri"] = n.url
        elif n.click_action:
            fields["extra.notify_effect"] = "2"
            fields["extra.intent_uri"] = n.click_action
    if n.ttl_seconds is not None:
        fields["time_to_live"] = str(n.ttl_seconds * 1000)
    o = overrides.mipush
    if o is not None and o.fields:
        for key, value in o.fields.items():
            if value == "":
                fields.pop(key, None)
            else:
                fields[key] = value
    return MiPushRendered(fields=fields)


def normalize_token(token: str, *, allow_lab: bool = False) -> str:
    """A MiPush regId: any non-empty string without whitespace or commas, ≤ 4,096 characters.

    Commas would split one device into several in the comma-joined ``registration_id``.
    """
    token = token.strip()
    if not token:
        raise ValueError("MiPush regId must not be empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"MiPush regId must be at most {MAX_TOKEN_CHARS} characters")
    if any(c.isspace() for c in token) or "," in token:
        raise ValueError("MiPush regId must not contain whitespace or commas")
    return token


def _preview(stamped: Any) -> dict[str, Any]:
    r, publish_id = message_ids.for_preview(stamped)
    fields = dict(r.fields)
    if publish_id is not None and "payload" in fields:
        fields["payload"] = message_ids.with_publish_id(fields["payload"], publish_id)
    return {
        "method": "POST",
        "url": "{region host}/v3/message/regid",
        "headers": {
            "Authorization": "key=<app secret>",
            "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
        },
        "body": {
            "registration_id": "<up to 1000 regIds, comma-separated>",
            "restricted_package_name": "<package name>",
            **fields,
        },
    }


RENDERER = Renderer(
    name="mipush",
    render=render,
    # The payload with the longest publish id (docs/receipts.md).
    size=lambda r: len(r.fields.get("payload", "").encode("utf-8")) + message_ids.overhead(multicast=True),
    limit=lambda _r: LIMIT,
    preview=_preview,
)
