"""gorush's request body (``notify.PushNotification`` in gorush's source), as msgspec Structs.

gorush decodes with Go's ``encoding/json``: unknown fields are ignored and a field of the
wrong JSON type is an error, so these Structs allow unknown fields but type every known one.
The shapes are gorush's wire names (``thread-id``, ``url-args``, Live Activity keys…); what each
becomes natively is ``translate.py``'s business.
"""

from __future__ import annotations

from typing import Any

import msgspec

#: gorush's platform codes (``core.PlatFormIos`` …) and the native provider each one means.
PLATFORMS: dict[int, str] = {1: "apns", 2: "fcm", 3: "hms"}
#: What gorush calls each platform in its logs (``core.PlatFormIos`` → ``"ios"`` …).
PLATFORM_NAMES: dict[int, str] = {1: "ios", 2: "android", 3: "huawei"}


class Alert(msgspec.Struct, rename="kebab", omit_defaults=True):
    """APNs ``aps.alert`` as gorush takes it (``loc-key``, ``title-loc-args``…)."""

    action: str | None = None
    action_loc_key: str | None = None
    body: str | None = None
    launch_image: str | None = None
    loc_args: list[str] | None = None
    loc_key: str | None = None
    title: str | None = None
    subtitle: str | None = None
    title_loc_args: list[str] | None = None
    title_loc_key: str | None = None
    summary_arg: str | None = None
    summary_arg_count: int | None = None


class GorushNotification(msgspec.Struct, omit_defaults=True):
    """One item of ``notifications[]``; every field of gorush's, typed as gorush types it."""

    # common
    platform: int = 0
    tokens: list[str] | None = None
    notif_id: str | None = None
    to: str | None = None
    topic: str | None = None
    message: str | None = None
    title: str | None = None
    image: str | None = None
    priority: str | None = None
    content_available: bool = False
    mutable_content: bool = False
    #: A sound name, or (iOS critical alerts) ``{"critical", "name", "volume"}``.
    sound: str | dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    retry: int | None = None
    # FCM
    notification: dict[str, Any] | None = None
    android: dict[str, Any] | None = None
    webpush: dict[str, Any] | None = None
    apns: dict[str, Any] | None = None
    fcm_options: dict[str, Any] | None = None
    condition: str | None = None
    collapse_key: str | None = None
    time_to_live: int | None = None
    dry_run: bool = False
    # HMS
    app_id: str | None = None
    app_secret: str | None = None
    huawei_notification: dict[str, Any] | None = None
    huawei_data: str | None = None
    huawei_collapse_key: int | None = None
    huawei_ttl: str | None = None
    bi_tag: str | None = None
    fast_app_target: int | None = None
    # iOS
    expiration: int | None = None
    apns_id: str | None = None
    collapse_id: str | None = None
    push_type: str | None = None
    badge: int | None = None
    category: str | None = None
    thread_id: str | None = msgspec.field(default=None, name="thread-id")
    url_args: list[str] | None = msgspec.field(default=None, name="url-args")
    alert: Alert | None = None
    production: bool = False
    development: bool = False
    name: str | None = None
    volume: float | None = None
    interruption_level: str | None = None
    # iOS Live Activities
    event: str | None = None
    timestamp: int | None = None
    content_state: dict[str, Any] | None = msgspec.field(default=None, name="content-state")
    stale_date: int | None = msgspec.field(default=None, name="stale-date")
    dismissal_date: int | None = msgspec.field(default=None, name="dismissal-date")
    attributes_type: str | None = msgspec.field(default=None, name="attributes-type")
    attributes: dict[str, Any] | None = None
    relevance_score: float | None = msgspec.field(default=None, name="relevance-score")


class GorushPush(msgspec.Struct):
    """``POST /api/push``. ``sync`` is pushgate's: gorush has it only as ``core.sync``."""

    notifications: list[GorushNotification]
    sync: bool | None = None


class LogEntry(msgspec.Struct, omit_defaults=True):
    """gorush's ``logx.LogPushEntry``: one failed token (gorush logs only failures)."""

    type: str
    platform: str
    token: str
    message: str
    error: str
    notif_id: str | None = None


class PushAnswer(msgspec.Struct):
    success: str
    counts: int
    logs: list[LogEntry]
