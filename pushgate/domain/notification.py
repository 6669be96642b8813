"""The unified notification a publish carries, before any provider renders it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

PROVIDERS: tuple[str, ...] = ("fcm", "webpush")
"""Providers this build can deliver to. Later providers (apns, hms, wns, mipush) add themselves here."""

KNOWN_PROVIDERS: tuple[str, ...] = ("fcm", "webpush", "apns", "hms", "wns", "mipush")
"""Provider names the API recognises (devices may be registered for providers not yet deliverable)."""


class Notification(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    title: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    body: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    data: dict[str, str] | None = None
    image: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    sound: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    badge: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    ttl_seconds: Annotated[int, msgspec.Meta(ge=0, le=2_419_200)] | None = None
    priority: Literal["high", "normal"] | None = None
    collapse_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None


class FcmOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Deep-merged over the rendered FCM ``message`` object.
    message: dict[str, Any] | None = None


class WebPushOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Deep-merged over the rendered JSON payload (what the service worker receives).
    payload: dict[str, Any] | None = None
    #: Replace/add request headers (``TTL``, ``Urgency``, ``Topic``).
    headers: dict[str, str] | None = None


class ProviderOverrides(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    fcm: FcmOverride | None = None
    webpush: WebPushOverride | None = None
