"""The unified notification a publish carries, before any provider renders it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Short = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Action(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A notification button: APNs category action, FCM/Web Push action, WNS toast action."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    #: Placeholder of a reply text field; its presence makes the action a text input.
    text_input: Annotated[str, msgspec.Meta(max_length=256)] | None = None


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
    #: APNs category (action set), also sent as data to the other providers.
    category: Short | None = None
    #: Groups notifications (APNs ``thread-id``, Android ``tag`` group).
    thread_id: Short | None = None
    interruption_level: Literal["passive", "active", "time-sensitive", "critical"] | None = None
    #: Android notification channel importance.
    channel_importance: Literal["min", "low", "default", "high", "max"] | None = None
    actions: Annotated[list[Action], msgspec.Meta(max_length=10)] | None = None
    #: A silent/background push: no alert, wakes the app (APNs push type ``background``, priority 5).
    content_available: bool | None = None
    #: Alias of ``content_available`` (the word other gateways use).
    background: bool | None = None
    #: Lets an APNs notification service extension modify the notification (rich media).
    mutable_content: bool | None = None
    #: Opened when the user taps the notification (Android click_action / Web Push url).
    click_action: Short | None = None
    url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    #: Android notification channel id.
    channel_id: Short | None = None

    @property
    def silent(self) -> bool:
        return bool(self.content_available or self.background)

    def has_content(self) -> bool:
        """Something a provider can deliver without a native override."""
        return bool(self.title or self.body or self.data or self.silent)


class FcmOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Deep-merged over the rendered FCM ``message`` object.
    message: dict[str, Any] | None = None


class WebPushOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Deep-merged over the rendered JSON payload (what the service worker receives).
    payload: dict[str, Any] | None = None
    #: Replace/add request headers (``TTL``, ``Urgency``, ``Topic``).
    headers: dict[str, str] | None = None


class ApnsOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Request headers (``apns-push-type``, ``apns-priority``, ``apns-topic``, …) set over the rendered ones.
    headers: dict[str, str] | None = None
    #: Deep-merged over the rendered JSON payload (``{"aps": {...}, ...}``).
    payload: dict[str, Any] | None = None


class HmsOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Deep-merged over the rendered HMS ``message`` object.
    message: dict[str, Any] | None = None


class WnsOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["toast", "tile", "badge", "raw"] | None = None
    headers: dict[str, str] | None = None
    #: The complete body (toast/tile/badge XML or raw bytes as text), replacing the rendered one.
    body: str | None = None


class MiPushOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Form fields set over the rendered ones (``title``, ``description``, ``pass_through``, ``extra.*``…).
    fields: dict[str, str] | None = None


class ProviderOverrides(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    fcm: FcmOverride | None = None
    webpush: WebPushOverride | None = None
    apns: ApnsOverride | None = None
    hms: HmsOverride | None = None
    wns: WnsOverride | None = None
    mipush: MiPushOverride | None = None

    def for_provider(self, provider: str) -> Any:
        return getattr(self, provider, None)
