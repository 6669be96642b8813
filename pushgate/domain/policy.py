"""When a notification may go to one device: delivery windows, local times, quiet hours, expiry.

Pure rules (no database, no clock of their own: the caller passes ``now``), so the planner can
decide a page of thousands of devices from a handful of computations and a test can walk a day of
windows with fixed instants. Frequency caps and preferences need counters and rows in the
database; this module only describes caps (:class:`Cap`) and leaves counting to the store.

:meth:`TimeRules.decide` applies, for one device:

1. **Zone.** The device's IANA ``timezone`` when it names a real zone. Otherwise (none, or not a
   zone) the publish's ``no_timezone``: ``None`` uses the app's ``default_timezone``;
   ``"send_now"`` ignores the delivery window and the local time (quiet hours still apply, in the
   app's default zone); ``"skip"`` makes the delivery ``skipped`` / ``no_timezone``, but only when
   the publish has a window or a local time (otherwise the zone changes nothing that matters);
   an IANA name uses that zone.
2. **Time rule.** ``t = now``. A ``deliver_between`` window moves ``t`` to the next window start
   unless the device's local time is inside it (reason ``delivery_window``); ``local_time`` moves
   ``t`` to the next instant whose local time is that time (reason ``local_time``). Admission
   refuses a publish that gives both.
3. **Quiet hours** (the user's if they have any, else the app's; skipped for ``critical``),
   evaluated at ``t`` in the quiet hours' own zone (the device's when they name none). Inside
   them, ``drop`` makes the delivery ``suppressed`` / ``quiet_hours``; ``defer`` moves ``t`` to the
   end of that quiet period and re-applies the delivery window from there (at most 8 times; a
   window that never opens outside them is ``suppressed`` / ``quiet_hours``).
4. **Expiry.** ``t >= expire_at`` makes the delivery ``expired``: a notification whose window opens
   after its deadline is not sent late.
5. ``t <= now`` is ``pending`` (send now); later is ``held`` until ``t`` with the reason.

Local times follow the zone's daylight-saving rules: a time that does not exist that day (spring
forward) resolves to the first valid instant after it, a time that occurs twice (fall back) to
its first occurrence (its second when the first has already passed), and a window that lies
wholly inside a skipped hour does not open that day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pushgate.domain.status import DeliveryStatus

DAY = 86400
_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_CATEGORY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
Accept = Callable[[float], bool]
_CAP_KEYS = ("limit", "window_seconds", "per", "category", "action")
_CAP_BOUNDS = {"limit": 1_000_000, "window_seconds": 366 * DAY}
#: How often quiet hours and a delivery window may push a delivery in turn before it is held as is.
MAX_DEFERRALS = 8
#: Local days scanned for the next boundary (past a skipped day or a window inside a skipped hour).
_SCAN_DAYS = 8


def parse_time_of_day(s: str) -> int:
    """``HH:MM`` or ``HH:MM:SS`` (24-hour clock) -> seconds since local midnight."""
    m = _TIME_OF_DAY.fullmatch(s) if isinstance(s, str) else None
    if m is None:
        raise ValueError(f"time of day must be HH:MM or HH:MM:SS, got {s!r}")
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3] or 0)


def format_time_of_day(seconds: int) -> str:
    """The inverse of :func:`parse_time_of_day` (``HH:MM`` when the seconds are zero)."""
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h:02d}:{m:02d}" if s == 0 else f"{h:02d}:{m:02d}:{s:02d}"


@lru_cache(maxsize=4096)
def _load(name: str) -> ZoneInfo | None:
    """The zone, or None; cached both ways, so a million devices with a bad zone read no file."""
    if not isinstance(name, str) or len(name) > 64 or _ZONE_NAME.fullmatch(name) is None:
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError for unknown names, empty strings and paths."""
    tz = _load(name)
    if tz is None:
        raise ValueError(f"unknown time zone {name!r}")
    return tz


def is_zone(name: str) -> bool:
    return _load(name) is not None


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """A daily local-time window ``[start, end)`` in seconds of the day; ``start > end`` crosses
    midnight (22:00-07:00); ``start == end`` means nothing and is refused."""

    start: int
    end: int

    def __post_init__(self) -> None:
        for v in (self.start, self.end):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < DAY:
                raise ValueError(f"a time of day is 0..86399 seconds, got {v!r}")
        if self.start == self.end:
            raise ValueError("a window's start and end must differ")

    @classmethod
    def parse(cls, start: str, end: str) -> DailyWindow:
        return cls(parse_time_of_day(start), parse_time_of_day(end))

    def contains(self, seconds_of_day: int) -> bool:
        if self.start < self.end:
            return self.start <= seconds_of_day < self.end
        return seconds_of_day >= self.start or seconds_of_day < self.end

    def to_dict(self) -> dict[str, str]:
        return {"start": format_time_of_day(self.start), "end": format_time_of_day(self.end)}


def _wall(at: float, tz: ZoneInfo) -> datetime:
    """The naive local wall time of instant ``at``."""
    return datetime.fromtimestamp(at, tz).replace(tzinfo=None, fold=0)


def seconds_of_day(at: float, tz: ZoneInfo) -> int:
    """The local time of day of ``at`` in whole seconds (16:59:59.9 is still before 17:00)."""
    dt = datetime.fromtimestamp(at, tz)
    return dt.hour * 3600 + dt.minute * 60 + dt.second


def _instants(day: date, tod: int, tz: ZoneInfo) -> list[float]:
    """The instants whose local time is ``tod`` on ``day``: one, two in a fall-back hour (earliest
    first), or, in a spring-forward gap, the first valid instant after it (the transition)."""
    wall = datetime(day.year, day.month, day.day) + timedelta(seconds=tod)
    first = wall.replace(tzinfo=tz, fold=0).timestamp()
    second = wall.replace(tzinfo=tz, fold=1).timestamp()
    if _wall(first, tz) == wall:
        if second != first and _wall(second, tz) == wall:
            return sorted((first, second))
        return [first]
    # A gap: the transition lies in (min, max]; local time first reaches past `wall` there.
    lo, hi = math.floor(min(first, second)), math.ceil(max(first, second))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid
    return [float(hi)]


def _next_instant(tod: int, tz: ZoneInfo, at: float, accept: Accept) -> float:
    """The earliest instant ``>= at`` whose local time resolves from ``tod`` and that ``accept``
    admits (for a window's boundary ``at`` is on the side where it cannot be one)."""
    today = _wall(at, tz).date()
    found = [
        x
        for k in range(-1, _SCAN_DAYS)
        for x in _instants(today + timedelta(days=k), tod, tz)
        if x >= at and accept(x)
    ]
    if not found:
        raise ValueError(f"{format_time_of_day(tod)} does not occur in {tz.key} after {at}")
    return min(found)


def next_open(w: DailyWindow, tz: ZoneInfo, at: float) -> float:
    """``at`` if its local time is inside ``w``, else the next window start (one that opens inside
    the window: a window wholly in a skipped hour is passed over)."""
    if w.contains(seconds_of_day(at, tz)):
        return at
    return _next_instant(w.start, tz, at, lambda x: w.contains(seconds_of_day(x, tz)))


def window_close(w: DailyWindow, tz: ZoneInfo, at: float) -> float:
    """When the occurrence of ``w`` containing ``at`` ends (``at`` if outside); local time is past it then."""
    if not w.contains(seconds_of_day(at, tz)):
        return at
    return _next_instant(w.end, tz, at, lambda x: not w.contains(seconds_of_day(x, tz)))


def next_local_time(tod: int, tz: ZoneInfo, at: float) -> float:
    """The first instant ``>= at`` whose local time of day is ``tod`` (today if not yet passed,
    else tomorrow)."""
    return _next_instant(tod, tz, at, lambda x: True)


def _mapping(d: Any, what: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be an object")
    unknown = sorted(set(d) - set(keys))
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {', '.join(map(str, unknown))}")
    return d


def _window(d: Any, what: str, extra: tuple[str, ...] = ()) -> DailyWindow:
    d = _mapping(d, what, ("start", "end", *extra))
    if "start" not in d or "end" not in d:
        raise ValueError(f"{what} need start and end")
    return DailyWindow.parse(d["start"], d["end"])


def _category(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or _CATEGORY.fullmatch(value) is None):
        raise ValueError(f"not a category id: {value!r}")
    return value


def _caps(value: Any) -> tuple[Cap, ...]:
    if not isinstance(value, list):
        raise ValueError("frequency_caps must be a list")
    return tuple(Cap.from_dict(c) for c in value)


def _zone_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not is_zone(value):
        raise ValueError(f"{what}: unknown time zone {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily period in which notifications wait (``defer``, to its end) or are ``drop``-ped."""

    window: DailyWindow
    #: An IANA zone, or None: the device's own zone (the app's default for devices without one).
    timezone: str | None
    action: str

    def __post_init__(self) -> None:
        if self.action not in ("defer", "drop"):
            raise ValueError(f"quiet hours action must be 'defer' or 'drop', got {self.action!r}")
        if self.timezone is not None:
            _zone_name(self.timezone, "quiet hours")

    @classmethod
    def from_dict(cls, d: dict) -> QuietHours:
        """``{"start": "22:00", "end": "07:00", "timezone": "Europe/Paris" | null, "action": "defer"}``."""
        window = _window(d, "quiet hours", ("timezone", "action"))
        return cls(window, d.get("timezone"), d.get("action", "defer"))

    def to_dict(self) -> dict:
        return {**self.window.to_dict(), "timezone": self.timezone, "action": self.action}


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``limit`` notifications per fixed ``window_seconds`` (aligned on the epoch: 86400
    is a UTC day) per device or per user, counting only ``category`` when given."""

    limit: int
    window_seconds: int
    per: str = "user"
    category: str | None = None
    action: str = "drop"

    def __post_init__(self) -> None:
        for what, hi in _CAP_BOUNDS.items():
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"cap {what} must be an integer 1..{hi}, got {v!r}")
        if self.per not in ("device", "user"):
            raise ValueError(f"cap per must be 'device' or 'user', got {self.per!r}")
        _category(self.category)
        if self.action not in ("drop", "delay"):
            raise ValueError(f"cap action must be 'drop' or 'delay', got {self.action!r}")

    @classmethod
    def from_dict(cls, d: dict) -> Cap:
        """``{"limit", "window_seconds", "per" = "user", "category" = null, "action" = "drop"}``."""
        d = _mapping(d, "frequency cap", _CAP_KEYS)
        if "limit" not in d or "window_seconds" not in d:
            raise ValueError("frequency cap needs limit and window_seconds")
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in _CAP_KEYS}

    def applies(self, category: str | None) -> bool:
        """A cap with a category counts only publishes of that category; one without counts all."""
        return self.category is None or self.category == category

    def scope(self, device_id: str, user: str | None) -> str:
        """The counter key: caps that count the same things share it (the limit is not part of
        it, so a publish's cap of 2 and the app's cap of 5 over one window read one count).
        A per-user cap on a device without a user counts that device."""
        who = f"user:{user}" if self.per == "user" and user is not None else f"device:{device_id}"
        return f"{who}|{self.category or '*'}|{self.window_seconds}"

    def window_at(self, at: float) -> tuple[float, float]:
        """The fixed window containing ``at``: ``[floor(at / w) * w, + w)``."""
        start = float(math.floor(at / self.window_seconds) * self.window_seconds)
        return start, start + self.window_seconds


@dataclass(frozen=True, slots=True)
class AppPolicy:
    """An app's policy defaults (config and ``app_policies``)."""

    default_timezone: str = "UTC"
    quiet_hours: QuietHours | None = None
    caps: tuple[Cap, ...] = ()

    def __post_init__(self) -> None:
        _zone_name(self.default_timezone, "default_timezone")

    @classmethod
    def from_dict(cls, d: dict) -> AppPolicy:
        """``{"default_timezone": "UTC", "quiet_hours": {...} | null, "frequency_caps": [cap, ...]}``."""
        d = _mapping(d, "app policy", ("default_timezone", "quiet_hours", "frequency_caps"))
        quiet = d.get("quiet_hours")
        quiet_hours = None if quiet is None else QuietHours.from_dict(quiet)
        return cls(d.get("default_timezone", "UTC"), quiet_hours, _caps(d.get("frequency_caps") or []))

    def to_dict(self) -> dict:
        return {
            "default_timezone": self.default_timezone,
            "quiet_hours": None if self.quiet_hours is None else self.quiet_hours.to_dict(),
            "frequency_caps": [c.to_dict() for c in self.caps],
        }


@dataclass(frozen=True, slots=True)
class PublishPolicy:
    """The policy fields of one publish."""

    window: DailyWindow | None = None
    local_time: int | None = None
    #: ``send_now``, ``skip``, an IANA zone, or None (the app's default zone).
    no_timezone: str | None = None
    critical: bool = False
    category: str | None = None
    #: None: the app's caps.
    caps: tuple[Cap, ...] | None = None

    def __post_init__(self) -> None:
        if self.window is not None and self.local_time is not None:
            raise ValueError("deliver_between and local_time cannot be combined")
        if self.no_timezone not in (None, "send_now", "skip"):
            _zone_name(self.no_timezone, "no_timezone")

    @classmethod
    def from_request(cls, policy: dict | None) -> PublishPolicy:
        """The publish body's policy keys as JSON builtins (other keys are ignored, so the whole
        body may be passed): ``deliver_between``, ``local_time``, ``no_timezone``, ``priority``,
        ``category``, ``frequency_caps``."""
        p = policy or {}
        if not isinstance(p, dict):
            raise ValueError("policy must be an object")
        between = p.get("deliver_between")
        window = None if between is None else _window(between, "deliver_between")
        priority = p.get("priority")
        if priority not in (None, "normal", "critical"):
            raise ValueError(f"priority must be 'normal' or 'critical', got {priority!r}")
        caps = p.get("frequency_caps")
        return cls(
            window=window,
            local_time=None if p.get("local_time") is None else parse_time_of_day(p["local_time"]),
            no_timezone=p.get("no_timezone"),
            critical=priority == "critical",
            category=_category(p.get("category")),
            caps=None if caps is None else _caps(caps),
        )

    @property
    def timed(self) -> bool:
        """Whether the device's zone decides when it is sent (a window or a local time)."""
        return self.window is not None or self.local_time is not None

    def caps_for(self, app: AppPolicy) -> tuple[Cap, ...]:
        """The caps this publish counts against: its own or the app's, none when critical, only
        those that apply to its category."""
        if self.critical:
            return ()
        caps = self.caps if self.caps is not None else app.caps
        return tuple(c for c in caps if c.applies(self.category))


@dataclass(frozen=True, slots=True)
class Decision:
    #: A :class:`DeliveryStatus` value: pending, held, suppressed, skipped or expired.
    status: str
    #: delivery_window, local_time, quiet_hours, no_timezone, expired, or None (pending).
    reason: str | None
    #: When a held delivery is released.
    release_at: float | None


class TimeRules:
    """Decides the time rules for the devices of one planning page; caches per (device zone, quiet
    hours) so a page of thousands of devices in 20 zones computes 20 decisions, not thousands."""

    __slots__ = ("_cache", "app", "computed", "expire_at", "now", "publish")

    def __init__(self, publish: PublishPolicy, app: AppPolicy, now: float, expire_at: float | None) -> None:
        self.publish, self.app, self.now, self.expire_at = publish, app, now, expire_at
        #: How many decisions were computed (not served from the cache).
        self.computed = 0
        self._cache: dict[tuple[str, str, QuietHours | None], Decision] = {}

    def decide(self, device_tz: str | None, user_quiet: QuietHours | None = None) -> Decision:
        """The decision for a device in ``device_tz`` whose user has ``user_quiet`` (or none)."""
        fallback = self.publish.no_timezone
        if device_tz is not None and is_zone(device_tz):
            mode, name = "zone", device_tz
        elif fallback == "skip" and self.publish.timed:
            return Decision(DeliveryStatus.SKIPPED, "no_timezone", None)
        elif fallback in (None, "skip", "send_now"):
            mode, name = ("send_now" if fallback == "send_now" else "zone"), self.app.default_timezone
        else:
            mode, name = "zone", fallback
        quiet = None if self.publish.critical else (user_quiet or self.app.quiet_hours)
        key = (mode, name, quiet)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._compute(zone(name), mode == "zone", quiet)
            self.computed += 1
        return found

    def _compute(self, tz: ZoneInfo, timed: bool, quiet: QuietHours | None) -> Decision:
        window = self.publish.window if timed else None
        t, reason = self.now, None
        if window is not None:
            t, reason = next_open(window, tz, t), "delivery_window"
        elif timed and self.publish.local_time is not None:
            t, reason = next_local_time(self.publish.local_time, tz, t), "local_time"
        if quiet is not None:
            qtz = tz if quiet.timezone is None else zone(quiet.timezone)
            for _ in range(MAX_DEFERRALS):
                if not quiet.window.contains(seconds_of_day(t, qtz)):
                    break
                if quiet.action == "drop":
                    return Decision(DeliveryStatus.SUPPRESSED, "quiet_hours", None)
                t, reason = window_close(quiet.window, qtz, t), "quiet_hours"
                if window is not None and (opened := next_open(window, tz, t)) > t:
                    t, reason = opened, "delivery_window"
            if quiet.window.contains(seconds_of_day(t, qtz)):  # the window lies inside them
                return Decision(DeliveryStatus.SUPPRESSED, "quiet_hours", None)
        if self.expire_at is not None and t >= self.expire_at:
            return Decision(DeliveryStatus.EXPIRED, "expired", None)
        if t <= self.now:
            return Decision(DeliveryStatus.PENDING, None, None)
        return Decision(DeliveryStatus.HELD, reason, t)
