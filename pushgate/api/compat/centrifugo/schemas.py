"""Centrifugo PRO push API request params (``internal/apiproto/api.proto``), with the older
names of the seed document (``channels``, ``tags``, ``since``, ``device_ids``, …) beside the
current ones (``topics``, ``cursor``, ``filter``, …), so a backend on either version works.

Unknown fields are refused (107 naming the field): a field pushgate would silently drop could be
one that changes who receives a notification.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from pushgate.api.schemas import ShortMap, TagMap

Str200 = Annotated[str, msgspec.Meta(max_length=200)]
Ids = Annotated[list[Str200], msgspec.Meta(max_length=1000)]
Topics = Annotated[list[Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=1000)]
Op = Literal["add", "remove", "set"]
Limit = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
#: Unix seconds up to the year 9999 (0: not given).
UnixTime = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799)]
Cursor = Annotated[str, msgspec.Meta(max_length=1024)]


class Params(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    pass


class DeviceRegister(Params):
    id: Annotated[str, msgspec.Meta(max_length=40)] = ""
    provider: Str200 = ""
    token: Annotated[str, msgspec.Meta(max_length=8192)] = ""
    platform: Str200 = ""
    user: Str200 = ""
    meta: ShortMap | None = None
    topics: Topics | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] = ""
    locale: Annotated[str, msgspec.Meta(max_length=35)] = ""
    #: The seed document's names.
    channels: Topics | None = None
    tags: TagMap | None = None


class ProviderToken(Params):
    provider: Str200
    token: Annotated[str, msgspec.Meta(max_length=8192)]


class UserUpdate(Params):
    user: Str200 = ""


class TimezoneUpdate(Params):
    timezone: Annotated[str, msgspec.Meta(max_length=64)] = ""


class LocaleUpdate(Params):
    locale: Annotated[str, msgspec.Meta(max_length=35)] = ""


class MetaUpdate(Params):
    meta: ShortMap = msgspec.field(default_factory=dict)


class TagsUpdate(Params):
    tags: TagMap = msgspec.field(default_factory=dict)


class TopicsUpdate(Params):
    op: Op
    topics: Topics = msgspec.field(default_factory=list)


class ChannelsUpdate(Params):
    """The seed document's ``channels_update``: the channels to set."""

    channels: Topics = msgspec.field(default_factory=list)


class DeviceUpdate(Params):
    ids: Ids | None = None
    users: Ids | None = None
    provider_tokens: Annotated[list[ProviderToken], msgspec.Meta(max_length=1000)] | None = None
    user_update: UserUpdate | None = None
    timezone_update: TimezoneUpdate | None = None
    locale_update: LocaleUpdate | None = None
    meta_update: MetaUpdate | None = None
    topics_update: TopicsUpdate | None = None
    tags_update: TagsUpdate | None = None
    channels_update: ChannelsUpdate | None = None


class DeviceRemove(Params):
    ids: Ids | None = None
    users: Ids | None = None
    provider_tokens: Annotated[list[ProviderToken], msgspec.Meta(max_length=1000)] | None = None


class DeviceFilter(Params):
    ids: Ids | None = None
    users: Ids | None = None
    topics: Topics | None = None
    providers: Ids | None = None
    platforms: Ids | None = None


class DeviceList(Params):
    filter: DeviceFilter | None = None
    cursor: Cursor = ""
    limit: Limit = 0
    include_total_count: bool = False
    include_meta: bool = False
    include_topics: bool = False
    include_webpush_keys: bool = False
    #: The seed document's flat filter and names.
    ids: Ids | None = None
    providers: Ids | None = None
    tokens: (
        Annotated[list[Annotated[str, msgspec.Meta(max_length=8192)]], msgspec.Meta(max_length=1000)] | None
    ) = None
    platforms: Ids | None = None
    users: Ids | None = None
    since: Cursor = ""
    include_tags: bool = False
    include_channels: bool = False


class DeviceTopicUpdate(Params):
    device_id: Str200
    op: Op
    topics: Topics = msgspec.field(default_factory=list)
    #: An ownership guard: the device must belong to this user (113 otherwise).
    user: Str200 = ""


class DeviceTopicFilter(Params):
    device_ids: Ids | None = None
    device_providers: Ids | None = None
    device_platforms: Ids | None = None
    device_users: Ids | None = None
    topics: Topics | None = None
    topic_prefix: Str200 = ""


class DeviceTopicList(Params):
    filter: DeviceTopicFilter | None = None
    cursor: Cursor = ""
    limit: Limit = 0
    include_total_count: bool = False
    include_device: bool = False


class UserTopicUpdate(Params):
    user: Str200
    op: Op
    topics: Topics | None = None
    #: The seed document's ``push_user_channel_update``.
    channels: Topics | None = None


class UserTopicFilter(Params):
    users: Ids | None = None
    topics: Topics | None = None
    topic_prefix: Str200 = ""


class UserTopicList(Params):
    filter: UserTopicFilter | None = None
    cursor: Cursor = ""
    limit: Limit = 0
    include_total_count: bool = False
    #: The seed document's ``push_user_channel_list``.
    users: Ids | None = None
    channels: Topics | None = None
    channel_prefix: Str200 = ""
    since: Cursor = ""


Tokens = Annotated[list[Annotated[str, msgspec.Meta(max_length=8192)]], msgspec.Meta(max_length=100_000)]


class PushRecipient(Params):
    """Exactly one of these (checked by the method)."""

    filter: DeviceFilter | None = None
    fcm_tokens: Tokens | None = None
    fcm_topic: str | None = None
    fcm_condition: str | None = None
    hms_tokens: Tokens | None = None
    hms_topic: str | None = None
    hms_condition: str | None = None
    apns_tokens: Tokens | None = None
    webpush_tokens: Tokens | None = None
    #: The seed document's recipients.
    device_ids: Ids | None = None
    channels: Topics | None = None


class FcmNotification(Params):
    message: dict[str, Any]


class HmsNotification(Params):
    message: dict[str, Any]


class ApnsNotification(Params):
    payload: dict[str, Any]
    headers: dict[str, str] | None = None


class WebPushNotification(Params):
    headers: dict[str, str] | None = None
    payload: Any = None


class PushNotification(Params):
    fcm: FcmNotification | None = None
    hms: HmsNotification | None = None
    apns: ApnsNotification | None = None
    webpush: WebPushNotification | None = None
    #: Unix seconds after which nothing more is attempted.
    expire_at: UnixTime = 0
    #: The seed document's place for ``uid``.
    uid: str = ""


class RatePolicy(Params):
    rate: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    interval_ms: Annotated[int, msgspec.Meta(ge=1, le=366 * 86_400_000)]


class RateLimit(Params):
    policies: Annotated[list[RatePolicy], msgspec.Meta(min_length=1, max_length=8)]
    key: str = ""
    drop_if_rate_limited: bool = False


class TimeLimit(Params):
    send_after_time: str
    send_before_time: str
    no_tz_send_now: bool = False


class LimitStrategy(Params):
    rate_limit: RateLimit | None = None
    time_limit: TimeLimit | None = None


class Localization(Params):
    translations: dict[str, str] = msgspec.field(default_factory=dict)


class SendPushNotification(Params):
    recipient: PushRecipient
    notification: PushNotification
    uid: str = ""
    send_at: UnixTime = 0
    optimize_for_reliability: bool = False
    limit_strategy: LimitStrategy | None = None
    analytics_uid: str = ""
    localizations: dict[str, Localization] | None = None
    use_templating: bool = False
    use_meta: bool = False


class UpdatePushStatus(Params):
    status: str
    analytics_uid: str = ""
    #: The seed document's name of ``analytics_uid``.
    uid: str = ""
    device_id: str = ""
    msg_id: str = ""


class CancelPush(Params):
    uid: str
