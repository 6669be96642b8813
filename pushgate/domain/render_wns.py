"""Windows Push Notification Services rendering (docs/providers.md#wns; table in docs/mapping.md).

WNS has no JSON: a notification is a toast, tile or badge XML document, or opaque raw bytes
for the app, chosen by ``X-WNS-Type``. The rendering is that body plus the ``X-WNS-*`` headers;
the provider only adds the bearer token and posts it to each device's channel URI.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from typing import Any

import msgspec

from pushgate.domain import message_ids
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.render import b64url_encode
from pushgate.domain.rendering import Renderer, RenderError
from pushgate.domain.urls import Allowance, UrlRefused, as_allowance, check_target

__all__ = ["LIMIT", "RENDERER", "WnsRendered", "normalize_token", "render", "wns_label"]

#: Body limit in bytes.
LIMIT = 5000
#: Toasts take at most five buttons and five inputs.
MAX_ACTIONS = 5
MAX_LABEL = 16
MAX_CHANNEL_URI = 2048
NOTIFY_HOST_SUFFIX = ".notify.windows.com"

CONTENT_TYPES = {
    "toast": "text/xml",
    "tile": "text/xml",
    "badge": "text/xml",
    "raw": "application/octet-stream",
}


class WnsRendered(msgspec.Struct, frozen=True):
    """One WNS request minus authorization and target: ``type``, headers and body bytes."""

    type: str
    headers: dict[str, str]
    body: bytes


def wns_label(value: str) -> str:
    """``X-WNS-Tag``/``X-WNS-Group`` take at most 16 characters; longer values become a stable
    16-character digest, so the same key still replaces the same notification."""
    if len(value) <= MAX_LABEL and value.isascii() and value.isprintable():
        return value
    return b64url_encode(hashlib.sha256(value.encode("utf-8")).digest())[:MAX_LABEL]


def _sound_src(sound: str) -> str:
    """A URI passes through (``ms-winsoundevent:…``, ``ms-appx:///…``); a bare name is a file in
    the app package, as an Android sound is a file in the app's resources."""
    return sound if ":" in sound else f"ms-appx:///{sound.lstrip('/')}"


def _toast(n: Notification) -> bytes:
    toast = ET.Element("toast")
    if n.url:
        toast.set("launch", n.url)
        toast.set("activationType", "protocol")
    elif n.click_action:
        toast.set("launch", n.click_action)
    elif n.data:
        # A toast has no data channel: the launch arguments are what the app receives on tap.
        toast.set("launch", json.dumps(n.data, separators=(",", ":"), ensure_ascii=False))
    if n.interruption_level == "critical":
        toast.set("scenario", "urgent")
    binding = ET.SubElement(ET.SubElement(toast, "visual"), "binding", template="ToastGeneric")
    for line in (n.title, n.body):
        if line:
            ET.SubElement(binding, "text").text = line
    if n.image:
        ET.SubElement(binding, "image", src=n.image)
    if n.sound is not None and n.sound != "default":
        ET.SubElement(toast, "audio", src=_sound_src(n.sound))
    if n.actions:
        actions = ET.SubElement(toast, "actions")
        chosen = n.actions[:MAX_ACTIONS]
        for a in chosen:  # inputs precede actions in the schema
            if a.text_input is not None:
                ET.SubElement(actions, "input", id=a.id, type="text", placeHolderContent=a.text_input)
        for a in chosen:
            el = ET.SubElement(
                actions, "action", content=a.title, arguments=a.id, activationType="foreground"
            )
            if a.text_input is not None:
                el.set("hint-inputId", a.id)
    return ET.tostring(toast, encoding="utf-8", xml_declaration=False)


def _body(kind: str, n: Notification) -> bytes:
    if kind == "toast":
        if not (n.title or n.body):
            raise RenderError("a toast needs notification.title or body (or providers.wns.body)")
        return _toast(n)
    if kind == "badge":
        if n.badge is None:
            raise RenderError("type badge needs notification.badge (or providers.wns.body)")
        return ET.tostring(ET.Element("badge", value=str(n.badge)), encoding="utf-8", xml_declaration=False)
    if kind == "raw":
        return json.dumps(n.data or {}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raise RenderError(f"type {kind} needs providers.wns.body (the {kind} XML)")


def render(n: Notification, overrides: ProviderOverrides, now: float = 0.0) -> WnsRendered:
    """Pick the type (toast for visible content, badge for a badge alone, raw for silent/data-only),
    build its body and the ``X-WNS-*`` headers. ``now`` is unused: ``X-WNS-TTL`` is relative."""
    o = overrides.wns
    if o is not None and o.type is not None:
        kind = o.type
    elif n.silent:
        kind = "raw"
    elif n.title or n.body:
        kind = "toast"
    elif n.badge is not None:
        kind = "badge"
    else:
        kind = "raw"
    body = o.body.encode("utf-8") if o is not None and o.body is not None else _body(kind, n)

    headers: dict[str, str] = {
        "X-WNS-Type": f"wns/{kind}",
        "Content-Type": CONTENT_TYPES[kind],
        "X-WNS-RequestForStatus": "true",
    }
    if n.ttl_seconds is not None:
        headers["X-WNS-TTL"] = str(n.ttl_seconds)
    if n.priority is not None:
        headers["X-WNS-PRIORITY"] = "1" if n.priority == "high" else "2"
    if kind in ("toast", "tile"):
        if n.collapse_key is not None:
            headers["X-WNS-Tag"] = wns_label(n.collapse_key)
        if n.thread_id is not None:
            headers["X-WNS-Group"] = wns_label(n.thread_id)
    if o is not None and o.headers:
        for name, value in o.headers.items():
            for existing in [h for h in headers if h.lower() == name.lower()]:
                del headers[existing]
            if value != "":
                headers[name] = value
    return WnsRendered(type=kind, headers=headers, body=body)


def normalize_token(token: str, *, allow_lab: bool | Allowance) -> str:
    """A channel URI: https on a ``*.notify.windows.com`` host, or any http(s) URL pushgate may
    connect to when ``allow_lab`` (``devices.allow_loopback_endpoints``) lets local simulators in.

    The URI receives our WNS bearer token, so it must not point anywhere else, and its host is
    read as the HTTP client reads it (``domain/urls.py``): a backslash or an odd spelling that
    another parser would read differently is refused.
    """
    token = token.strip()
    if not token or len(token) > MAX_CHANNEL_URI:
        raise ValueError(f"WNS channel URI must be 1-{MAX_CHANNEL_URI} characters")
    if any(c.isspace() for c in token):
        raise ValueError("WNS channel URI must not contain whitespace")
    try:
        target = check_target(token, allow_lab)
    except UrlRefused as exc:
        raise ValueError(f"WNS channel URI: {exc}") from None
    if as_allowance(allow_lab).lab:
        return token
    if target.scheme != "https" or not target.host.endswith(NOTIFY_HOST_SUFFIX):
        raise ValueError(
            "WNS channel URI must be https on a *.notify.windows.com host (set "
            "devices.allow_loopback_endpoints = true to allow the provider lab)"
        )
    return token


def _preview(stamped: Any) -> dict[str, Any]:
    r, publish_id = message_ids.for_preview(stamped)
    text = r.body.decode("utf-8", "replace")
    body: Any = text
    if r.type == "raw":
        try:
            body = json.loads(text)
        except ValueError:
            pass
    if publish_id is not None and isinstance(body, dict):
        body = {message_ids.KEY: message_ids.id_object(publish_id, message_ids.PREVIEW_DELIVERY_ID), **body}
    return {
        "method": "POST",
        "url": "<channel URI>",
        "headers": {"Authorization": "Bearer <access token>", **r.headers},
        "body": body,
    }


def _size(r: WnsRendered) -> int:
    """The body's bytes; a raw one with the longest message ids (XML carries none)."""
    return len(r.body) + (message_ids.overhead() if r.type == "raw" else 0)


RENDERER = Renderer(name="wns", render=render, size=_size, limit=lambda _r: LIMIT, preview=_preview)
