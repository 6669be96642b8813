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
