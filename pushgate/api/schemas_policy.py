"""Request bodies of the policy layer (docs/policy.md): delivery windows, frequency caps, quiet
hours, categories and preferences. ``schemas.py`` imports the ones a publish carries."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


#: A time of day, ``HH:MM`` or ``HH:MM:SS`` (24-hour clock).
TimeOfDay = Annotated[
    str,
    msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$(?!\n)", examples=["09:00", "21:30"]),
]
#: An IANA time zone name (``Europe/Paris``), checked against the zone database by the routes.
ZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["Europe/Paris"])]
#: A notification category's id (``POST /v1/categories``).
CategoryId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$(?!\n)")]


class DeliveryWindowIn(Strict):
    """A daily window in each device's own time zone; ``start`` after ``end`` crosses midnight."""

    start: TimeOfDay
    end: TimeOfDay


class FrequencyCapIn(Strict):
    """At most ``limit`` notifications per ``window_seconds`` (fixed windows from the epoch:
    86400 is a UTC day) per device or per user, counting only ``category`` when given."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    window_seconds: Annotated[int, msgspec.Meta(ge=1, le=366 * 86400)]
    per: Literal["device", "user"] = "user"
    category: CategoryId | None = None
    #: ``drop``: outcome ``suppressed`` (reason ``frequency_cap``); ``delay``: held until a
    #: window has room.
    action: Literal["drop", "delay"] = "drop"


class QuietHoursIn(Strict):
    """A daily window (``start`` after ``end`` crosses midnight) in ``timezone`` (null: each
    device's own zone) in which notifications wait (``defer``) or are dropped (``drop``)."""

    start: TimeOfDay
    end: TimeOfDay
    timezone: ZoneName | None = None
    action: Literal["defer", "drop"] = "defer"


class AppPolicyIn(Strict):
    """``PUT /v1/policy``: the app's whole policy (it replaces the configured one)."""

    #: The zone of devices that have none.
    default_timezone: ZoneName = "UTC"
    quiet_hours: QuietHoursIn | None = None
    frequency_caps: Annotated[list[FrequencyCapIn], msgspec.Meta(max_length=16)] = msgspec.field(
        default_factory=list
    )


class QuietHoursOut(msgspec.Struct):
    start: str
    end: str
    timezone: str | None
    action: Literal["defer", "drop"]


class FrequencyCapOut(msgspec.Struct):
    limit: int
    window_seconds: int
    per: Literal["device", "user"]
    category: str | None
    action: Literal["drop", "delay"]


class AppPolicyOut(msgspec.Struct):
    default_timezone: str
    quiet_hours: QuietHoursOut | None
    frequency_caps: list[FrequencyCapOut]


class PolicyOut(msgspec.Struct):
    """The app's effective policy and where it comes from: ``api`` (``PUT /v1/policy``) or
    ``config`` (``[policy]`` and ``[apps.<name>.policy]``)."""

    source: Literal["api", "config"]
    policy: AppPolicyOut


class CategoryIn(Strict):
    """``POST /v1/categories``."""

    id: CategoryId
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    #: A user who never chose receives the category when true.
    default_opt_in: bool = True


class CategoryUpdateIn(Strict):
    """``PUT /v1/categories/{id}``: the category's description and default, both replaced."""

    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    default_opt_in: bool = True


class CategoryOut(msgspec.Struct):
    id: str
    description: str
    default_opt_in: bool
    #: ``api`` (created or changed through the API) or ``config``.
    source: Literal["api", "config"]


class CategoryPage(msgspec.Struct):
    items: list[CategoryOut]


class PreferencesIn(Strict):
    """``PUT /v1/users/{user}/preferences``: a choice per category named (the others keep theirs)."""

    categories: Annotated[dict[CategoryId, bool], msgspec.Meta(max_length=1000)]


class PreferenceIn(Strict):
    """``PUT /v1/users/{user}/preferences/{category}``."""

    opted_in: bool


class PreferencesOut(msgspec.Struct):
    """Every category of the app with what the user gets: their own choice where they made one
    (listed in ``explicit``), the category's default otherwise."""

    user: str
    categories: dict[str, bool]
    explicit: list[str]


class UserQuietHoursOut(msgspec.Struct):
    user: str
    quiet_hours: QuietHoursOut
