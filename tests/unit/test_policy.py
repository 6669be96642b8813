"""The time rules of ``pushgate.domain.policy`` at fixed instants (never the real clock).

Expected instants are computed independently with ``datetime`` + ``zoneinfo`` from the local
wall time a person would read off a clock in that zone, so a wrong offset, a wrong day or a
wrong DST resolution in the module shows up as a different epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushgate.domain import policy
from pushgate.domain.policy import (
    AppPolicy,
    Cap,
    DailyWindow,
    Decision,
    PublishPolicy,
    QuietHours,
    TimeRules,
    format_time_of_day,
    is_zone,
    next_local_time,
    next_open,
    parse_time_of_day,
    seconds_of_day,
    window_close,
    zone,
)

H = 3600
DAY = 86400


def at(zone_name: str, *wall: int, fold: int = 0) -> float:
    """The epoch of a local wall time (``fold=1``: the second of a repeated hour)."""
    return datetime(*wall, tzinfo=ZoneInfo(zone_name), fold=fold).timestamp()  # type: ignore[misc,arg-type]


def utc(*wall: int) -> float:
    return datetime(*wall, tzinfo=UTC).timestamp()  # type: ignore[misc,arg-type]


def W(start: str, end: str) -> DailyWindow:
    return DailyWindow.parse(start, end)


def rules(
    now: float, expire_at: float | None = None, app: AppPolicy | None = None, **publish: Any
) -> TimeRules:
    return TimeRules(PublishPolicy(**publish), app or AppPolicy(), now, expire_at)


NOW = utc(2026, 3, 10, 12, 0)  # a Tuesday; US already on EDT (since 03-08), Europe still on CET


# --- times of day and zones -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00", 0), ("09:00", 9 * H), ("09:00:30", 9 * H + 30), ("23:59:59", DAY - 1), ("12:34", 45240)],
)
def test_parse_time_of_day(text: str, seconds: int) -> None:
    assert parse_time_of_day(text) == seconds
    assert parse_time_of_day(format_time_of_day(seconds)) == seconds


@pytest.mark.parametrize(
    "text", ["24:00", "9:00", "09:60", "09:00:60", "", "09:00\n", "09:00:00:00", " 09:00", "0900", None, 900]
)
def test_parse_time_of_day_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_time_of_day(text)  # type: ignore[arg-type]


def test_format_time_of_day() -> None:
    assert format_time_of_day(9 * H) == "09:00"
    assert format_time_of_day(9 * H + 5) == "09:00:05"
    assert format_time_of_day(DAY - 1) == "23:59:59"


def test_zone_known_and_cached() -> None:
    assert zone("Europe/Paris") == ZoneInfo("Europe/Paris")
    assert zone("Europe/Paris") is zone("Europe/Paris")
    assert is_zone("America/Port-au-Prince") and is_zone("Etc/GMT+5") and is_zone("UTC")


@pytest.mark.parametrize(
    "name",
    ["", "Foo/Bar", "/etc/passwd", "../etc/passwd", "Europe", "utc", "Europe/Paris\x00", "Europe//Paris"],
)
def test_zone_unknown(name: str) -> None:
    assert not is_zone(name)
    with pytest.raises(ValueError, match=r"unknown time zone '.*'"):
        zone(name)


def test_zone_message_names_the_zone() -> None:
    with pytest.raises(ValueError) as caught:
        zone("Mars/Olympus")
    assert str(caught.value) == "unknown time zone 'Mars/Olympus'"


def test_every_iana_zone_is_accepted() -> None:
    import zoneinfo

    names = zoneinfo.available_timezones()
    assert len(names) > 300
    assert [n for n in names if not is_zone(n)] == []


# --- daily windows ----------------------------------------------------------------------------


def test_window_contains_start_inclusive_end_exclusive() -> None:
    w = W("09:00", "17:00")
    assert not w.contains(9 * H - 1)
    assert w.contains(9 * H)
    assert w.contains(17 * H - 1)
    assert not w.contains(17 * H)
    assert not w.contains(0)


def test_window_crossing_midnight() -> None:
    w = W("22:00", "06:00")
    assert w.contains(22 * H) and w.contains(DAY - 1) and w.contains(0) and w.contains(6 * H - 1)
    assert not w.contains(6 * H) and not w.contains(12 * H) and not w.contains(22 * H - 1)


def test_window_seconds_precision() -> None:
    w = W("09:00:30", "09:00:45")
    assert (w.start, w.end) == (9 * H + 30, 9 * H + 45)
    assert [s for s in range(9 * H, 9 * H + 60) if w.contains(s)] == list(range(9 * H + 30, 9 * H + 45))
    assert w.to_dict() == {"start": "09:00:30", "end": "09:00:45"}


@pytest.mark.parametrize(("start", "end"), [(0, 0), (-1, 5), (5, DAY), (True, 5), (1.5, 5)])
def test_window_refuses(start: object, end: object) -> None:
    with pytest.raises(ValueError):
        DailyWindow(start, end)  # type: ignore[arg-type]


def test_window_parse_refuses_equal_ends() -> None:
    with pytest.raises(ValueError, match="differ"):
        W("09:00", "09:00:00")


def test_seconds_of_day_floors_fractions() -> None:
    assert seconds_of_day(utc(2026, 3, 10, 16, 59, 59) + 0.999, ZoneInfo("UTC")) == 17 * H - 1
    assert seconds_of_day(NOW, ZoneInfo("Asia/Kathmandu")) == 17 * H + 45 * 60


# --- next_open / window_close / next_local_time -------------------------------------------------

FIVE = {
    # zone: (local time at NOW, expected opening of 09:00-17:00 as a local wall time, or None = open)
    "UTC": None,
    "Europe/Paris": None,  # 13:00 CET
    "America/New_York": (2026, 3, 10, 9, 0),  # 08:00 EDT: opens in an hour
    "Asia/Tokyo": (2026, 3, 11, 9, 0),  # 21:00 JST: tomorrow
    "Australia/Sydney": (2026, 3, 11, 9, 0),  # 23:00 AEDT: tomorrow
}


@pytest.mark.parametrize("name", sorted(FIVE))
def test_next_open_five_zones(name: str) -> None:
    wall = FIVE[name]
    expected = NOW if wall is None else at(name, *wall)
    assert next_open(W("09:00", "17:00"), ZoneInfo(name), NOW) == expected


def test_five_zones_by_hand() -> None:
    # The same figures written out in UTC, so the helper `at` cannot hide a mistake.
    assert at("America/New_York", 2026, 3, 10, 9, 0) == utc(2026, 3, 10, 13, 0)
    assert at("Asia/Tokyo", 2026, 3, 11, 9, 0) == utc(2026, 3, 11, 0, 0)
    assert at("Australia/Sydney", 2026, 3, 11, 9, 0) == utc(2026, 3, 10, 22, 0)


def test_five_zones_decisions() -> None:
    r = rules(NOW, window=W("09:00", "17:00"))
    got = {name: r.decide(name) for name in FIVE}
    assert got["UTC"] == got["Europe/Paris"] == Decision("pending", None, None)
    assert got["America/New_York"] == Decision("held", "delivery_window", utc(2026, 3, 10, 13, 0))
    assert got["Asia/Tokyo"] == Decision("held", "delivery_window", utc(2026, 3, 11, 0, 0))
    assert got["Australia/Sydney"] == Decision("held", "delivery_window", utc(2026, 3, 10, 22, 0))


def test_next_open_crossing_midnight() -> None:
    w, tz = W("22:00", "06:00"), ZoneInfo("UTC")
    for inside in (utc(2026, 3, 10, 23, 0), utc(2026, 3, 10, 0, 0), utc(2026, 3, 10, 5, 59, 59)):
        assert next_open(w, tz, inside) == inside
    assert next_open(w, tz, utc(2026, 3, 10, 6, 0)) == utc(2026, 3, 10, 22, 0)
    assert next_open(w, tz, utc(2026, 3, 10, 21, 59, 59)) == utc(2026, 3, 10, 22, 0)


def test_next_open_seconds_precision() -> None:
    w, tz = W("09:00:30", "09:00:45"), ZoneInfo("UTC")
    assert next_open(w, tz, utc(2026, 3, 10, 9, 0, 29)) == utc(2026, 3, 10, 9, 0, 30)
    assert next_open(w, tz, utc(2026, 3, 10, 9, 0, 29) + 0.5) == utc(2026, 3, 10, 9, 0, 30)
    assert next_open(w, tz, utc(2026, 3, 10, 9, 0, 44) + 0.9) == utc(2026, 3, 10, 9, 0, 44) + 0.9
    assert next_open(w, tz, utc(2026, 3, 10, 9, 0, 45)) == utc(2026, 3, 11, 9, 0, 30)


def test_window_close() -> None:
    tz = ZoneInfo("UTC")
    night = W("22:00", "06:00")
    assert window_close(night, tz, utc(2026, 3, 10, 23, 0)) == utc(2026, 3, 11, 6, 0)
    assert window_close(night, tz, utc(2026, 3, 10, 3, 0)) == utc(2026, 3, 10, 6, 0)
    assert window_close(night, tz, utc(2026, 3, 10, 12, 0)) == utc(2026, 3, 10, 12, 0)
    assert window_close(W("09:00", "17:00"), tz, utc(2026, 3, 10, 16, 59, 59)) == utc(2026, 3, 10, 17, 0)
    sydney = ZoneInfo("Australia/Sydney")
    assert window_close(night, sydney, NOW) == at("Australia/Sydney", 2026, 3, 11, 6, 0)


def test_next_local_time_today_or_tomorrow() -> None:
    tz = ZoneInfo("UTC")
    assert next_local_time(9 * H, tz, utc(2026, 3, 10, 8, 0)) == utc(2026, 3, 10, 9, 0)
    assert next_local_time(9 * H, tz, utc(2026, 3, 10, 9, 0)) == utc(2026, 3, 10, 9, 0)
    assert next_local_time(9 * H, tz, utc(2026, 3, 10, 9, 0, 1)) == utc(2026, 3, 11, 9, 0)
    tokyo = ZoneInfo("Asia/Tokyo")  # NOW is 21:00 there
    assert next_local_time(22 * H, tokyo, NOW) == at("Asia/Tokyo", 2026, 3, 10, 22, 0)
    assert next_local_time(20 * H, tokyo, NOW) == at("Asia/Tokyo", 2026, 3, 11, 20, 0)


# Europe/Paris 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC; 02:00-02:59 do not exist.
PARIS_GAP = utc(2026, 3, 29, 1, 0)


def test_gap_window_start_opens_at_first_valid_instant() -> None:
    paris = ZoneInfo("Europe/Paris")
    before = at("Europe/Paris", 2026, 3, 29, 0, 0)
    assert next_open(W("02:30", "05:00"), paris, before) == PARIS_GAP
    assert seconds_of_day(PARIS_GAP, paris) == 3 * H
    assert next_local_time(2 * H + 30 * 60, paris, before) == PARIS_GAP
    # The next day it exists again, in CEST.
    after = at("Europe/Paris", 2026, 3, 29, 4, 0)
    assert next_local_time(2 * H + 30 * 60, paris, after) == utc(2026, 3, 30, 0, 30)


def test_gap_swallows_a_whole_window() -> None:
    paris = ZoneInfo("Europe/Paris")
    before = at("Europe/Paris", 2026, 3, 29, 0, 0)
    assert next_open(W("02:15", "02:45"), paris, before) == utc(2026, 3, 30, 0, 15)


def test_gap_window_close() -> None:
    paris = ZoneInfo("Europe/Paris")
    late = at("Europe/Paris", 2026, 3, 28, 23, 30)
    assert window_close(W("22:00", "02:30"), paris, late) == PARIS_GAP
    # The end is skipped, and local time lands inside the window again: it runs to the next end.
    assert window_close(W("02:45", "02:30"), paris, late) == utc(2026, 3, 30, 0, 30)


# America/New_York 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00 UTC; 01:00-01:59 happen twice.
FIRST_0130 = utc(2026, 11, 1, 5, 30)  # 01:30 EDT
SECOND_0130 = utc(2026, 11, 1, 6, 30)  # 01:30 EST


def test_fold_resolution() -> None:
    ny = ZoneInfo("America/New_York")
    assert at("America/New_York", 2026, 11, 1, 1, 30) == FIRST_0130
    assert at("America/New_York", 2026, 11, 1, 1, 30, fold=1) == SECOND_0130
    midnight = at("America/New_York", 2026, 11, 1, 0, 0)
    assert next_local_time(90 * 60, ny, midnight) == FIRST_0130
    assert next_open(W("01:30", "03:00"), ny, midnight) == FIRST_0130
    assert window_close(W("23:00", "01:30"), ny, midnight) == FIRST_0130
    # Past the first 01:30 (01:45 EDT), the next 01:30 is the second one, not tomorrow's.
    assert next_local_time(90 * 60, ny, utc(2026, 11, 1, 5, 45)) == SECOND_0130
    # Past both (01:45 EST): tomorrow, in EST.
    assert next_local_time(90 * 60, ny, utc(2026, 11, 1, 6, 45)) == utc(2026, 11, 2, 6, 30)


# --- TimeRules.decide -------------------------------------------------------------------------

QUIET_DEFER = QuietHours(W("22:00", "07:00"), "UTC", "defer")
QUIET_DROP = QuietHours(W("22:00", "07:00"), "UTC", "drop")
LATE = utc(2026, 3, 10, 23, 0)


def test_no_rules_is_pending() -> None:
    assert rules(NOW).decide("Asia/Tokyo") == Decision("pending", None, None)
    assert rules(NOW).decide(None) == Decision("pending", None, None)


def test_local_time_today_and_tomorrow() -> None:
    r = rules(NOW, local_time=parse_time_of_day("09:00"))
    assert r.decide("America/New_York") == Decision("held", "local_time", utc(2026, 3, 10, 13, 0))
    assert r.decide("Europe/Paris") == Decision("held", "local_time", at("Europe/Paris", 2026, 3, 11, 9, 0))
    # Exactly now: sent now.
    assert rules(NOW, local_time=12 * H).decide("UTC") == Decision("pending", None, None)


def test_quiet_hours_defer_and_drop() -> None:
    app = AppPolicy(quiet_hours=QUIET_DEFER)
    assert rules(LATE, app=app).decide("Asia/Tokyo") == Decision(
        "held", "quiet_hours", utc(2026, 3, 11, 7, 0)
    )
    assert rules(NOW, app=app).decide("Asia/Tokyo") == Decision("pending", None, None)
    dropped = rules(LATE, app=AppPolicy(quiet_hours=QUIET_DROP)).decide("UTC")
    assert dropped == Decision("suppressed", "quiet_hours", None)


def test_critical_bypasses_quiet_hours() -> None:
    for quiet in (QUIET_DEFER, QUIET_DROP):
        r = rules(LATE, app=AppPolicy(quiet_hours=quiet), critical=True)
        assert r.decide("UTC") == Decision("pending", None, None)
        assert r.decide("UTC", quiet) == Decision("pending", None, None)


def test_user_quiet_hours_replace_the_apps() -> None:
    app = AppPolicy(quiet_hours=QUIET_DROP)
    lunch = QuietHours(W("12:00", "13:00"), None, "defer")
    assert rules(NOW, app=app).decide("UTC", lunch) == Decision(
        "held", "quiet_hours", utc(2026, 3, 10, 13, 0)
    )
    # The user's hours are the only ones: the app's night drop does not apply to this user.
    assert rules(LATE, app=app).decide("UTC", lunch) == Decision("pending", None, None)
    assert rules(LATE, app=app).decide("UTC") == Decision("suppressed", "quiet_hours", None)


def test_quiet_hours_in_device_zone_or_their_own() -> None:
    device_zone = AppPolicy(quiet_hours=QuietHours(W("22:00", "07:00"), None, "defer"))
    r = rules(NOW, app=device_zone)
    assert r.decide("Asia/Tokyo") == Decision("pending", None, None)  # 21:00
    sydney = at("Australia/Sydney", 2026, 3, 11, 7, 0)
    assert r.decide("Australia/Sydney") == Decision("held", "quiet_hours", sydney)  # 23:00
    paris_quiet = AppPolicy(quiet_hours=QuietHours(W("12:30", "14:00"), "Europe/Paris", "defer"))
    paris_end = utc(2026, 3, 10, 13, 0)
    # 13:00 in Paris whatever the device's zone.
    assert rules(NOW, app=paris_quiet).decide("Australia/Sydney") == Decision(
        "held", "quiet_hours", paris_end
    )


def test_quiet_defer_lands_outside_the_window() -> None:
    quiet = AppPolicy(quiet_hours=QuietHours(W("16:00", "18:00"), None, "defer"))
    at_1630 = utc(2026, 3, 10, 16, 30)
    r = rules(at_1630, app=quiet, window=W("09:00", "17:00"))
    assert r.decide("UTC") == Decision("held", "delivery_window", utc(2026, 3, 11, 9, 0))


def test_quiet_defer_lands_inside_the_window() -> None:
    quiet = AppPolicy(quiet_hours=QuietHours(W("16:00", "09:30"), None, "defer"))
    r = rules(utc(2026, 3, 10, 16, 30), app=quiet, window=W("09:00", "17:00"))
    assert r.decide("UTC") == Decision("held", "quiet_hours", utc(2026, 3, 11, 9, 30))


def test_window_opening_into_quiet_drop_is_suppressed() -> None:
    quiet = AppPolicy(quiet_hours=QuietHours(W("08:00", "10:00"), None, "drop"))
    r = rules(utc(2026, 3, 10, 18, 0), app=quiet, window=W("09:00", "17:00"))
    assert r.decide("UTC") == Decision("suppressed", "quiet_hours", None)


def test_never_settling_is_suppressed_by_quiet_hours() -> None:
    # Every window opening (06:00-09:00) lies inside quiet hours (05:00-10:00): deferring would
    # only send it during quiet hours days later, so it is suppressed.
    quiet = AppPolicy(quiet_hours=QuietHours(W("05:00", "10:00"), None, "defer"))
    r = rules(utc(2026, 3, 10, 7, 0), app=quiet, window=W("06:00", "09:00"))
    assert r.decide("UTC") == Decision("suppressed", "quiet_hours", None)
    assert policy.MAX_DEFERRALS == 8


def test_expiry() -> None:
    w = W("09:00", "17:00")
    opens = utc(2026, 3, 10, 13, 0)  # New York
    assert rules(NOW, opens - 1, window=w).decide("America/New_York") == Decision("expired", "expired", None)
    assert rules(NOW, opens, window=w).decide("America/New_York") == Decision("expired", "expired", None)
    held = Decision("held", "delivery_window", opens)
    assert rules(NOW, opens + 1, window=w).decide("America/New_York") == held
    assert rules(NOW, NOW, window=w).decide("UTC") == Decision("expired", "expired", None)
    assert rules(NOW, NOW + 1, window=w).decide("UTC") == Decision("pending", None, None)
    deferred = rules(LATE, utc(2026, 3, 11, 6, 0), app=AppPolicy(quiet_hours=QUIET_DEFER))
    assert deferred.decide("UTC") == Decision("expired", "expired", None)


def test_no_timezone_variants() -> None:
    w = W("09:00", "17:00")
    tokyo_app = AppPolicy(default_timezone="Asia/Tokyo")
    tokyo_open = Decision("held", "delivery_window", utc(2026, 3, 11, 0, 0))
    for missing in (None, "Mars/Olympus", ""):
        assert rules(NOW, app=tokyo_app, window=w).decide(missing) == tokyo_open
        assert rules(NOW, app=tokyo_app, window=w, no_timezone="send_now").decide(missing).status == "pending"
        skipped = Decision("skipped", "no_timezone", None)
        assert rules(NOW, app=tokyo_app, window=w, no_timezone="skip").decide(missing) == skipped
        assert rules(NOW, local_time=10 * H, no_timezone="skip").decide(missing) == skipped
        ny = rules(NOW, app=tokyo_app, window=w, no_timezone="America/New_York").decide(missing)
        assert ny == Decision("held", "delivery_window", utc(2026, 3, 10, 13, 0))
    # skip only matters with a window or a local time; a device with a zone is never skipped.
    assert rules(NOW, no_timezone="skip").decide(None) == Decision("pending", None, None)
    assert rules(NOW, app=tokyo_app, window=w, no_timezone="skip").decide("Asia/Tokyo") == tokyo_open


def test_send_now_still_honours_quiet_hours_in_the_default_zone() -> None:
    quiet = QuietHours(W("20:00", "23:00"), None, "defer")  # 21:00 in Tokyo at NOW
    app = AppPolicy(default_timezone="Asia/Tokyo", quiet_hours=quiet)
    r = rules(NOW, app=app, window=W("09:00", "10:00"), no_timezone="send_now")
    assert r.decide(None) == Decision("held", "quiet_hours", at("Asia/Tokyo", 2026, 3, 10, 23, 0))
    dropping = AppPolicy(default_timezone="Asia/Tokyo", quiet_hours=QuietHours(quiet.window, None, "drop"))
    r = rules(NOW, app=dropping, window=W("09:00", "10:00"), no_timezone="send_now")
    assert r.decide("Bad/Zone") == Decision("suppressed", "quiet_hours", None)


ZONES20 = [
    "UTC", "Europe/Paris", "Europe/London", "Europe/Moscow", "America/New_York", "America/Chicago",
    "America/Denver", "America/Los_Angeles", "America/Sao_Paulo", "America/St_Johns", "Asia/Tokyo",
    "Asia/Kolkata", "Asia/Kathmandu", "Asia/Shanghai", "Asia/Dubai", "Australia/Sydney",
    "Australia/Lord_Howe", "Pacific/Auckland", "Pacific/Chatham", "Africa/Lagos",
]  # fmt: skip


def test_cache_computes_once_per_zone() -> None:
    app = AppPolicy(quiet_hours=QuietHours(W("22:00", "07:00"), None, "defer"))
    r = rules(NOW, app=app, window=W("09:00", "21:00"))
    got = [r.decide(ZONES20[i % 20]) for i in range(10_000)]
    assert r.computed == 20
    for i, name in enumerate(ZONES20):
        fresh = rules(NOW, app=app, window=W("09:00", "21:00"))
        assert got[i] == got[i + 20 * 250] == fresh.decide(name)
        assert fresh.computed == 1
    assert len({d.release_at for d in got}) > 2  # the zones really differ


def test_cache_keys_on_user_quiet_hours_and_folds_bad_zones() -> None:
    r = rules(LATE)
    a = QuietHours(W("22:00", "07:00"), "UTC", "defer")
    b = QuietHours(W("22:00", "07:00"), "UTC", "drop")
    assert r.decide("UTC", a).status == "held"
    assert r.decide("UTC", b).status == "suppressed"
    assert r.decide("UTC", QuietHours(W("22:00", "07:00"), "UTC", "defer")).status == "held"
    assert r.computed == 2
    for bad in ("Nowhere/City", "x", "", None):
        assert r.decide(bad) == Decision("pending", None, None)
    assert r.computed == 3  # every zoneless device falls back to the same default zone


# --- caps ---------------------------------------------------------------------------------------


def test_cap_scope() -> None:
    per_user = Cap(3, DAY, "user", "marketing")
    assert per_user.scope("dev1", "alice") == f"user:alice|marketing|{DAY}"
    assert per_user.scope("dev1", None) == f"device:dev1|marketing|{DAY}"
    assert Cap(3, 60, "device").scope("dev1", "alice") == "device:dev1|*|60"
    assert Cap(5, 60).scope("d", "bob") == Cap(2, 60, action="delay").scope("d", "bob") == "user:bob|*|60"


def test_cap_window_at() -> None:
    cap = Cap(1, DAY)
    assert cap.window_at(100_000) == (DAY, 2 * DAY)
    assert cap.window_at(DAY) == (DAY, 2 * DAY)
    assert cap.window_at(DAY - 0.5) == (0, DAY)
    assert Cap(1, 3600).window_at(NOW + 59.9) == (NOW, NOW + 3600)


def test_cap_applies() -> None:
    assert Cap(1, 60).applies(None) and Cap(1, 60).applies("marketing")
    assert Cap(1, 60, category="marketing").applies("marketing")
    assert not Cap(1, 60, category="marketing").applies("transactional")
    assert not Cap(1, 60, category="marketing").applies(None)


def test_cap_from_dict_defaults_and_round_trip() -> None:
    cap = Cap.from_dict({"limit": 3, "window_seconds": DAY})
    assert cap == Cap(3, DAY, "user", None, "drop")
    full = {"limit": 2, "window_seconds": 60, "per": "device", "category": "news", "action": "delay"}
    assert Cap.from_dict(full).to_dict() == full
    assert Cap.from_dict(cap.to_dict()) == cap


@pytest.mark.parametrize(
    "bad",
    [
        {"limit": 0, "window_seconds": 60},
        {"limit": True, "window_seconds": 60},
        {"limit": "3", "window_seconds": 60},
        {"limit": 1_000_001, "window_seconds": 60},
        {"limit": 1, "window_seconds": 0},
        {"limit": 1, "window_seconds": 366 * DAY + 1},
        {"limit": 1, "window_seconds": 60, "per": "app"},
        {"limit": 1, "window_seconds": 60, "action": "queue"},
        {"limit": 1, "window_seconds": 60, "category": "bad id!"},
        {"limit": 1, "window_seconds": 60, "category": 7},
        {"limit": 1, "window_seconds": 60, "extra": 1},
        {"window_seconds": 60},
        [1, 60],
    ],
)
def test_cap_from_dict_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        Cap.from_dict(bad)  # type: ignore[arg-type]


# --- shapes -------------------------------------------------------------------------------------


def test_quiet_hours_from_dict() -> None:
    q = QuietHours.from_dict({"start": "22:00", "end": "07:00", "timezone": "Europe/Paris", "action": "drop"})
    assert q == QuietHours(W("22:00", "07:00"), "Europe/Paris", "drop")
    assert q.to_dict() == {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris", "action": "drop"}
    assert QuietHours.from_dict({"start": "22:00", "end": "07:00"}) == QuietHours(
        W("22:00", "07:00"), None, "defer"
    )
    assert QuietHours.from_dict(q.to_dict()) == q


@pytest.mark.parametrize(
    "bad",
    [
        {"start": "22:00", "end": "22:00"},
        {"start": "22:00"},
        {"start": "25:00", "end": "07:00"},
        {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"},
        {"start": "22:00", "end": "07:00", "action": "mute"},
        {"start": "22:00", "end": "07:00", "days": [1]},
        "22:00-07:00",
    ],
)
def test_quiet_hours_from_dict_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        QuietHours.from_dict(bad)  # type: ignore[arg-type]


def test_app_policy_from_dict() -> None:
    assert AppPolicy.from_dict({}) == AppPolicy()
    d = {
        "default_timezone": "Europe/Paris",
        "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": None, "action": "defer"},
        "frequency_caps": [
            {"limit": 3, "window_seconds": DAY, "per": "user", "category": None, "action": "drop"}
        ],
    }
    app = AppPolicy.from_dict(d)
    assert app.default_timezone == "Europe/Paris"
    assert app.quiet_hours == QuietHours(W("22:00", "07:00"), None, "defer")
    assert app.caps == (Cap(3, DAY),)
    assert app.to_dict() == d
    assert AppPolicy().to_dict() == {"default_timezone": "UTC", "quiet_hours": None, "frequency_caps": []}


@pytest.mark.parametrize(
    "bad",
    [
        {"default_timezone": "Nowhere"},
        {"default_timezone": ""},
        {"frequency_caps": {"limit": 1}},
        {"frequency_caps": [{"limit": 0, "window_seconds": 1}]},
        {"quiet_hours": {"start": "x", "end": "07:00"}},
        {"quiet": None},
        None,
    ],
)
def test_app_policy_from_dict_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        AppPolicy.from_dict(bad)  # type: ignore[arg-type]


def test_publish_policy_from_request() -> None:
    assert PublishPolicy.from_request(None) == PublishPolicy() == PublishPolicy.from_request({})
    p = PublishPolicy.from_request(
        {
            "deliver_between": {"start": "09:00", "end": "21:00"},
            "no_timezone": "skip",
            "priority": "critical",
            "category": "marketing",
            "frequency_caps": [{"limit": 2, "window_seconds": 60}],
            "channel": "news",  # other publish fields pass through unread
            "send_at": None,
        }
    )
    assert p == PublishPolicy(W("09:00", "21:00"), None, "skip", True, "marketing", (Cap(2, 60),))
    assert p.timed
    local = PublishPolicy.from_request(
        {"local_time": "09:30", "priority": "normal", "no_timezone": "Asia/Tokyo"}
    )
    assert (local.local_time, local.critical, local.no_timezone, local.caps) == (
        9 * H + 1800,
        False,
        "Asia/Tokyo",
        None,
    )
    assert PublishPolicy.from_request({"frequency_caps": []}).caps == ()


@pytest.mark.parametrize(
    "bad",
    [
        {"deliver_between": {"start": "09:00", "end": "21:00"}, "local_time": "09:00"},
        {"deliver_between": {"start": "09:00"}},
        {"deliver_between": {"start": "09:00", "end": "21:00", "tz": "UTC"}},
        {"deliver_between": {"start": "09:00", "end": "09:00"}},
        {"local_time": "9am"},
        {"no_timezone": "later"},
        {"priority": "urgent"},
        {"category": 3},
        {"frequency_caps": [{"limit": 0, "window_seconds": 60}]},
        {"frequency_caps": {"limit": 1, "window_seconds": 60}},
        ["deliver_between"],
    ],
)
def test_publish_policy_from_request_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        PublishPolicy.from_request(bad)  # type: ignore[arg-type]


def test_caps_for() -> None:
    daily, marketing = Cap(5, DAY), Cap(3, DAY, category="marketing")
    app = AppPolicy(caps=(daily, marketing))
    assert PublishPolicy().caps_for(app) == (daily,)
    assert PublishPolicy(category="marketing").caps_for(app) == (daily, marketing)
    assert PublishPolicy(category="transactional").caps_for(app) == (daily,)
    own = Cap(1, 60)
    assert PublishPolicy(caps=(own,), category="marketing").caps_for(app) == (own,)
    assert PublishPolicy(caps=(), category="marketing").caps_for(app) == ()
    assert PublishPolicy(category="marketing", critical=True).caps_for(app) == ()
    assert PublishPolicy(caps=(own,), critical=True).caps_for(app) == ()


# --- properties ---------------------------------------------------------------------------------

PROPERTY_ZONES = [
    "UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Australia/Lord_Howe",
    "Asia/Kathmandu", "Pacific/Chatham", "Pacific/Apia", "America/Sao_Paulo", "Asia/Tehran",
    "America/St_Johns", "Europe/Dublin", "Africa/Casablanca",
]  # fmt: skip
#: Instants next to daylight-saving changes (and Samoa's skipped 2011-12-30), where rules break.
TRANSITIONS = [
    PARIS_GAP, utc(2026, 10, 25, 1, 0), utc(2026, 3, 8, 7, 0), utc(2026, 11, 1, 6, 0),
    utc(2026, 4, 4, 16, 0), utc(2026, 10, 3, 16, 0), utc(2011, 12, 30, 10, 0), utc(2026, 4, 4, 15, 0),
]  # fmt: skip

instants = st.one_of(
    st.floats(min_value=utc(2000, 1, 1), max_value=utc(2040, 1, 1), allow_nan=False),
    st.builds(lambda t, d: t + d, st.sampled_from(TRANSITIONS), st.integers(-2 * DAY, 2 * DAY)),
)
times_of_day = st.one_of(st.integers(0, DAY - 1), st.integers(0, 47).map(lambda h: h * 1800))
windows = st.tuples(times_of_day, times_of_day).filter(lambda p: p[0] != p[1]).map(lambda p: DailyWindow(*p))
PROPERTY = settings(
    database=None,
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY
@given(w=windows, name=st.sampled_from(PROPERTY_ZONES), now=instants)
def test_property_window_decision(w: DailyWindow, name: str, now: float) -> None:
    tz = ZoneInfo(name)
    d = rules(now, window=w).decide(name)
    if d.status == "pending":
        assert w.contains(seconds_of_day(now, tz))
    else:
        assert d.status == "held" and d.reason == "delivery_window"
        assert d.release_at is not None and d.release_at > now
        assert w.contains(seconds_of_day(d.release_at, tz))
        assert not w.contains(seconds_of_day(now, tz))
        assert not w.contains(seconds_of_day(d.release_at - 1, tz))  # it opens there, not earlier
        assert d.release_at - now <= 3 * DAY


@PROPERTY
@given(w=windows, name=st.sampled_from(PROPERTY_ZONES), t=instants)
def test_property_window_close(w: DailyWindow, name: str, t: float) -> None:
    tz = ZoneInfo(name)
    end = window_close(w, tz, t)
    if not w.contains(seconds_of_day(t, tz)):
        assert end == t
    else:
        assert t < end <= t + 3 * DAY
        assert not w.contains(seconds_of_day(end, tz))
        assert w.contains(seconds_of_day(end - 1, tz))


@PROPERTY
@given(tod=times_of_day, name=st.sampled_from(PROPERTY_ZONES), t=instants)
def test_property_next_local_time(tod: int, name: str, t: float) -> None:
    tz = ZoneInfo(name)
    nxt = next_local_time(tod, tz, t)
    assert t <= nxt <= t + 2 * DAY
    if seconds_of_day(nxt, tz) != tod:
        # Only a skipped local time resolves elsewhere: to the instant the clock jumped past it.
        before = datetime.fromtimestamp(nxt - 1, tz).replace(tzinfo=None)
        after = datetime.fromtimestamp(nxt, tz).replace(tzinfo=None)
        days = [before.date() + timedelta(days=k) for k in range((after.date() - before.date()).days + 1)]
        assert any(
            before < datetime.combine(d, datetime.min.time()) + timedelta(seconds=tod) < after for d in days
        )


def test_decision_statuses_are_delivery_statuses() -> None:
    from pushgate.domain.status import DeliveryStatus

    made = {
        rules(NOW).decide("UTC").status,
        rules(NOW, window=W("09:00", "10:00")).decide("UTC").status,
        rules(LATE, app=AppPolicy(quiet_hours=QUIET_DROP)).decide("UTC").status,
        rules(NOW, window=W("09:00", "10:00"), no_timezone="skip").decide(None).status,
        rules(NOW, NOW).decide("UTC").status,
    }
    assert made == {"pending", "held", "suppressed", "skipped", "expired"}
    assert made <= {s.value for s in DeliveryStatus}


def test_decide_is_pure_of_the_real_clock() -> None:
    # Far past and far future instants decide by their own local time, not today's.
    past = utc(2001, 6, 1, 3, 0)
    assert rules(past, window=W("09:00", "17:00")).decide("UTC") == Decision(
        "held", "delivery_window", past + 6 * H
    )
    future = datetime(2039, 1, 1, 10, tzinfo=UTC) + timedelta(minutes=1)
    assert rules(future.timestamp(), window=W("09:00", "17:00")).decide("UTC").status == "pending"


@PROPERTY
@given(w=windows, q=windows, name=st.sampled_from(PROPERTY_ZONES), now=instants)
def test_property_window_with_quiet_hours(w: DailyWindow, q: DailyWindow, name: str, now: float) -> None:
    tz = ZoneInfo(name)
    d = rules(now, app=AppPolicy(quiet_hours=QuietHours(q, None, "defer")), window=w).decide(name)
    if d.status == "pending":
        assert w.contains(seconds_of_day(now, tz)) and not q.contains(seconds_of_day(now, tz))
    elif d.status == "suppressed":
        # Only when the window never opens outside the quiet hours.
        assert d.reason == "quiet_hours" and d.release_at is None
        assert q.contains(w.start) or q.contains((w.end - 1) % 86400)
    else:
        assert d.status == "held" and d.reason in ("delivery_window", "quiet_hours")
        assert d.release_at is not None and d.release_at > now
        # Whichever rule moved it last, it is released inside the window.
        assert w.contains(seconds_of_day(d.release_at, tz))
        if d.reason == "quiet_hours":
            assert not q.contains(seconds_of_day(d.release_at, tz))
            assert q.contains(seconds_of_day(d.release_at - 1, tz))
