"""Request and response bodies of audience filters, device search and device stats
(docs/filters.md). The filter itself is checked by ``domain/filters.py:parse`` (errors that name
the exact place inside it), so here it is any JSON object."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

#: A filter of docs/filters.md, e.g. ``{"all": [{"provider": {"in": ["fcm", "apns"]}},
#: {"tag": "plan", "is": "pro"}, {"app_version": {"gte": "2.10.0"}}, {"not": {"user": "absent"}}]}``.
FilterJson = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="An audience filter (docs/filters.md): `all`/`any`/`not` over provider, platform, "
        "user, channels, tag, meta, locale, language, timezone, app_version, last_seen, created.",
        examples=[{"all": [{"provider": {"in": ["fcm", "apns"]}}, {"tag": "plan", "is": "pro"}]}],
    ),
]


class FilterRecipient(
    msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, tag_field="type", tag="filter"
):
    """The app's active devices the filter matches, planned page by page like a channel."""

    filter: FilterJson


class DeviceSearchIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    filter: FilterJson
    #: ``next_cursor`` of the previous page.
    cursor: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: Also count every match (time-bounded, like ``POST /v1/audience/count``).
    include_total_count: bool = False
    #: Attach these to each device (as ``GET /v1/devices?include=``).
    include: Annotated[list[Literal["meta", "tags", "channels"]], msgspec.Meta(max_length=3)] | None = None


class AudienceCountOut(msgspec.Struct):
    #: Active (and not stale) devices the recipients reach, each once.
    devices: int
    #: Distinct users among those devices (devices without a user are not counted here).
    users: int


class DeviceStatsOut(msgspec.Struct):
    #: Devices by status (``active``, ``invalid``).
    by_status: dict[str, int]
    #: ``{provider: {status: n}}``; likewise by platform and by locale (``""``: none).
    by_provider: dict[str, dict[str, int]]
    by_platform: dict[str, dict[str, int]]
    by_locale: dict[str, dict[str, int]]
    #: Active devices by when they were last seen: ``1d``, ``7d``, ``30d``, ``older``
    #: (each bucket: seen within that many days but not within the previous bucket).
    by_last_seen: dict[str, int]
