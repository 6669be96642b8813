"""Request and response bodies of the native API (msgspec Structs: validation + OpenAPI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, cast

import msgspec

from pushgate.api.schemas_campaigns import PublishTagsIn, PublishTagsOut
from pushgate.api.schemas_filter import FilterRecipient
from pushgate.api.schemas_policy import CategoryId, DeliveryWindowIn, FrequencyCapIn, TimeOfDay
from pushgate.api.schemas_preview import TemplateUsed
from pushgate.api.schemas_template import Localizations, TemplateRef
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.providers import registry

Str200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: A provider of the registry (``pushgate/providers/registry.py``); checked by the routes
#: against the registry, not by a fixed list here, so a registered provider needs no API change.
ProviderName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        description=f"A delivery provider: {', '.join(registry.names())}",
        examples=list(registry.names()),
        # Documented as an enum of this build's providers (Litestar reads "extra" into the
        # OpenAPI schema); the routes check against the live registry.
        extra_json_schema={"extra": {"enum": list(registry.names())}},
    ),
]
Platform = Literal["ios", "android", "web", "windows", "macos", "other"]
#: Free-form string map (device ``meta``): names up to 200 and values up to 1000 characters.
ShortMap = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=200)], Annotated[str, msgspec.Meta(max_length=1000)]],
    msgspec.Meta(max_length=64),
]
#: An id or a name a request looks rows up by (never longer than what can be stored).
Key200 = Annotated[str, msgspec.Meta(max_length=200)]
#: Like ShortMap, but tags are indexed: names fit a 200- and values a 500-character column.
TagMap = Annotated[
    dict[
        Annotated[str, msgspec.Meta(min_length=1, max_length=200)],
        Annotated[str, msgspec.Meta(max_length=500)],
    ],
    msgspec.Meta(max_length=64),
]
ChannelList = Annotated[list[Channel], msgspec.Meta(max_length=1000)]


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


Environment = Literal["production", "sandbox"]


class DeviceIn(Strict):
    provider: ProviderName
    #: A string; for Web Push the subscription object or its JSON string.
    token: str | dict[str, Any]
    platform: Platform
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)] | None = None
    user: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    meta: ShortMap | None = None
    tags: TagMap | None = None
    channels: ChannelList | None = None
    locale: Annotated[str, msgspec.Meta(max_length=35)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    #: APNs only: which APNs environment issued the token (default: the credential's).
    environment: Environment | None = None
    app_version: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class DevicePatch(Strict):
    token: str | dict[str, Any] | None = None
    platform: Platform | None = None
    user: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    meta: ShortMap | None = None
    tags: TagMap | None = None
    channels: ChannelList | None = None
    locale: Annotated[str, msgspec.Meta(max_length=35)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    environment: Environment | None = None
    app_version: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class ProviderToken(Strict):
    provider: ProviderName
    token: str | dict[str, Any]


class UserUpdate(Strict):
    #: The new user; an empty string detaches the device from its user.
    user: Annotated[str, msgspec.Meta(max_length=200)]


class MetaUpdate(Strict):
    meta: ShortMap


class TagsUpdate(Strict):
    tags: TagMap


class ChannelsUpdate(Strict):
    op: Literal["add", "remove", "set"]
    channels: ChannelList = msgspec.field(default_factory=list)


class DeviceFilterIn(Strict):
    ids: Annotated[list[Key200], msgspec.Meta(max_length=1000)] | None = None
    users: Annotated[list[Key200], msgspec.Meta(max_length=1000)] | None = None
    provider_tokens: Annotated[list[ProviderToken], msgspec.Meta(max_length=1000)] | None = None


class DeviceBulkUpdate(DeviceFilterIn):
    user_update: UserUpdate | None = None
    meta_update: MetaUpdate | None = None
    tags_update: TagsUpdate | None = None
    channels_update: ChannelsUpdate | None = None


class UserChannelsIn(Strict):
    op: Literal["add", "remove", "set"]
    channels: ChannelList = msgspec.field(default_factory=list)


class DeviceRecipient(Strict, tag_field="type", tag="device"):
    device_id: Str200


class ChannelRecipient(Strict, tag_field="type", tag="channel"):
    channel: Channel


class UserRecipient(Strict, tag_field="type", tag="user"):
    user: Str200


class TokenRecipient(Strict, tag_field="type", tag="token"):
    provider: ProviderName
    token: str | dict[str, Any]


#: ``(?!\n)``: Python's ``$`` also matches before a trailing newline (JSON Schema's does not).
TopicName = Annotated[str, msgspec.Meta(min_length=1, max_length=900, pattern=r"^[a-zA-Z0-9\-_.~%]+$(?!\n)")]
Condition = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class NativeRecipient(Strict):
    """A provider's own audience (a topic, a condition), delivered as one target ``<kind>:<value>``.

    One Struct per entry of a provider spec's ``native`` (``fcm_topic`` → ``FcmTopicRecipient``
    with a ``topic`` field), built from the registry when this module is imported.
    """


#: The field each native target kind carries, and its rules.
_NATIVE_FIELDS: dict[str, Any] = {
    #: e.g. ``news``
    "topic": TopicName,
    #: e.g. ``'news' in topics && ('sports' in topics || 'weather' in topics)``
    "condition": Condition,
}


def _native_recipient(tag: str, kind: str) -> type[NativeRecipient]:
    name = "".join(part.capitalize() for part in tag.split("_")) + "Recipient"
    made = msgspec.defstruct(
        name,
        [(kind, _NATIVE_FIELDS[kind])],
        bases=(NativeRecipient,),
        module=__name__,
        tag_field="type",
        tag=tag,
        forbid_unknown_fields=True,
        omit_defaults=True,
    )
    return cast("type[NativeRecipient]", made)


NATIVE_RECIPIENTS: tuple[type[NativeRecipient], ...] = tuple(
    _native_recipient(tag, kind) for spec in registry.specs() for tag, kind in spec.native.items()
)

_NAMED = (DeviceRecipient, ChannelRecipient, UserRecipient, TokenRecipient)
if TYPE_CHECKING:
    _Named = DeviceRecipient | ChannelRecipient | UserRecipient | TokenRecipient
    Recipient = _Named | FilterRecipient | NativeRecipient
else:
    Recipient = Union[(*_NAMED, FilterRecipient, *NATIVE_RECIPIENTS)]


class PublishIn(PublishTagsIn):  # + campaign, labels, publish_id, dry_run (schemas_campaigns.py)
    recipients: Annotated[list[Recipient], msgspec.Meta(min_length=1)]
    notification: Notification = msgspec.field(default_factory=Notification)
    providers: ProviderOverrides | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    #: RFC 3339; undelivered recipients become ``expired`` after it.
    expire_at: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    #: RFC 3339: the publish is ``scheduled`` until then (a past time means now).
    send_at: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    #: Deliver only inside this daily window of each device's local time (held until it opens).
    deliver_between: DeliveryWindowIn | None = None
    #: Deliver at this local time on its next occurrence for each device.
    local_time: TimeOfDay | None = None
    #: For ``deliver_between``/``local_time``, devices without a time zone: ``send_now``,
    #: ``skip`` (outcome ``skipped``) or an IANA zone to assume (default: the app's time zone).
    no_timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    #: ``critical`` bypasses quiet hours and frequency caps (alarms, one-time passwords).
    priority: Literal["normal", "critical"] | None = None
    #: A category of ``/v1/categories``: users opted out of it are ``suppressed`` (``preference``).
    category: CategoryId | None = None
    #: Caps for this publish instead of the app's defaults (``[]``: none).
    frequency_caps: Annotated[list[FrequencyCapIn], msgspec.Meta(max_length=8)] | None = None
    template: TemplateRef | None = None  # docs/templates.md
    localizations: Localizations | None = None
    #: ``off`` | ``also`` | ``first`` | ``only``: the notification also (or only) goes to the
    #: recipients' open realtime sessions (docs/realtime.md); default ``[realtime] default_mode``.
    realtime: Annotated[str, msgspec.Meta(max_length=16)] | None = None


#: The most publishes one ``POST /v1/publish/batch`` takes.
MAX_PUBLISH_BATCH = 1000


class PublishBatchIn(Strict):
    #: 1-1000 publishes. Each is exactly a ``POST /v1/publish`` body (``PublishIn``), decoded and
    #: validated one by one so that an invalid item is that item's error, not the request's.
    publishes: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_PUBLISH_BATCH,
            description="Each item is a `POST /v1/publish` body (schema `PublishIn`); "
            "an invalid item gets an `error` entry in the answer, the others are admitted.",
        ),
    ]


# ---- responses ---------------------------------------------------------------------------


class DeviceOut(msgspec.Struct, omit_defaults=True):
    id: str
    provider: str
    token: str
    platform: str
    status: str
    created_at: str
    updated_at: str
    last_seen_at: str
    user: str | None = None
    locale: str | None = None
    timezone: str | None = None
    environment: str | None = None
    invalid_reason: str | None = None
    invalidated_at: str | None = None
    app_version: str | None = None
    meta: dict[str, str] | None = None
    tags: dict[str, str] | None = None
    channels: list[str] | None = None


class DeviceEnvelope(msgspec.Struct):
    device: DeviceOut


class DevicePage(msgspec.Struct, omit_defaults=True):
    items: list[DeviceOut]
    next_cursor: str | None
    total_count: int | None = None  # with a filter and include_total_count (docs/filters.md)


class Counts(msgspec.Struct):
    planned: int
    sent: int
    failed: int
    invalid_token: int
    retrying: int
    expired: int
    cancelled: int
    #: Stopped by policy (``suppressed_by_reason`` says which rule).
    suppressed: int
    #: Nothing to send them (e.g. no payload for their provider).
    skipped: int
    #: Held by policy right now, each until its ``release_at``.
    held: int
    #: A dry run's would-be deliveries (nothing was sent).
    dry_run: int
    #: Deliveries whose device reported each receipt, once each (docs/receipts.md); an
    #: ``opened``, ``dismissed`` or ``clicked`` also counts as ``delivered``.
    delivered: int = 0
    opened: int = 0
    dismissed: int = 0
    clicked: int = 0


class PublishAccepted(msgspec.Struct):
    publish_id: str
    status: str


class PublishBatchItem(msgspec.Struct, omit_defaults=True):
    """One item's answer: ``publish_id`` and ``status``, or ``error`` (never both)."""

    publish_id: str | None = None
    status: str | None = None
    #: True when the item's idempotency key gave back an earlier publish (nothing new was
    #: stored): the batch form of the single route's ``Idempotent-Replayed`` header.
    replayed: bool = False
    #: What ``POST /v1/publish`` would have answered for this item's body.
    error: ErrorInfo | None = None


class PublishBatchOut(msgspec.Struct):
    #: One entry per item of ``publishes``, in request order.
    items: list[PublishBatchItem]
    #: Items with a ``publish_id`` (new or replayed).
    admitted: int
    #: Items with an ``error``.
    rejected: int


class PublishOut(PublishTagsOut, omit_defaults=True):  # + reasons, campaign, … (schemas_campaigns.py)
    id: str
    status: str
    created_at: str
    counts: Counts
    by_provider: dict[str, Counts]
    completed_at: str | None = None
    started_at: str | None = None
    expire_at: str | None = None
    idempotency_key: str | None = None
    error: dict[str, str] | None = None
    #: When a ``scheduled`` publish starts.
    send_at: str | None = None
    #: ``counts.suppressed`` by reason (``quiet_hours``, ``preference``, ``frequency_cap``).
    suppressed_by_reason: dict[str, int] | None = None
    #: ``counts.skipped`` by reason (``no_payload_for_provider``, ``no_timezone``).
    skipped_by_reason: dict[str, int] | None = None
    #: The stored template the publish used (its ``template``), and its version.
    template: TemplateUsed | None = None


class PublishPage(msgspec.Struct):
    items: list[PublishOut]
    next_cursor: str | None


class DeliveryOut(msgspec.Struct):
    device_id: str | None
    recipient_id: str
    provider: str
    status: str
    error_code: str | None
    error_message: str | None
    #: The class of the last provider answer: sent, device_terminal, device_transient,
    #: provider_transient, quota, credential or payload (null before any answer).
    error_class: str | None
    attempts: int
    sent_at: str | None
    provider_message_id: str | None
    #: ``held``/``suppressed``/``skipped``: the rule or reason (``delivery_window``,
    #: ``quiet_hours``, ``frequency_cap``, ``preference``, ``no_payload_for_provider``, …).
    reason: str | None = None
    #: ``held``: when it goes out.
    release_at: str | None = None
    #: When the device reported each receipt (RFC 3339; null: not reported): docs/receipts.md.
    delivered_at: str | None = None
    opened_at: str | None = None
    dismissed_at: str | None = None
    clicked_at: str | None = None


class DeliveryPage(msgspec.Struct):
    items: list[DeliveryOut]
    next_cursor: str | None


class ChannelOut(msgspec.Struct):
    channel: str
    devices: int


class ChannelPage(msgspec.Struct):
    items: list[ChannelOut]
    next_cursor: str | None


class UserChannelOut(msgspec.Struct):
    user: str
    channel: str


class UserChannelPage(msgspec.Struct):
    items: list[UserChannelOut]
    next_cursor: str | None


class Matched(msgspec.Struct):
    matched: int


class ErrorInfo(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct):
    """The one error shape of the API (docs/api.md, "Errors"), for every 4xx and 5xx."""

    error: ErrorInfo
