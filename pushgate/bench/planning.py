"""``pushgate bench plan``: one device-local-window publish to a big channel, timed until it is
planned (issue 11, acceptance 7).

A window publish is planned once: every device gets its delivery record at once, those whose
local time is inside the window go out now and the others are ``held`` until their zone's next
window start, so the held deliveries share a handful of ``release_at`` values (one per distinct
UTC offset). This mode measures what that costs the gateway: planning seconds and planned/s,
its CPU seconds and peak RSS while planning, and how many distinct release times the held
deliveries got. Run it at two sizes: flat RSS and a constant time per device mean the plan
does not keep per-device state or timers.

With ``audience_filter`` (issue 12) the recipient is ``{"type": "filter", ...}`` instead of the
channel: the planner pages the filter's devices as it pages a channel's, and the expected count
is what ``POST /v1/audience/count`` answers first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pushgate.bench import procstat
from pushgate.bench.http import BenchClient, BenchHttpError
from pushgate.bench.runner import Endpoints, resolve_pid

__all__ = ["ZONES", "default_window", "open_zones", "run_plan", "zones_for"]

#: Real IANA zones spread over the UTC offsets, west to east; many observe DST (the US, Europe,
#: Sydney, Auckland, Azores) and some sit on half or quarter hours (Kolkata, Kathmandu, Adelaide).
ZONES: tuple[str, ...] = (
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Halifax",
    "America/Sao_Paulo",
    "Atlantic/Azores",
    "Europe/London",
    "Europe/Paris",
    "Europe/Athens",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Auckland",
)

#: Deliveries whose ``release_at`` the report samples (``GET …/deliveries?status=held`` pages).
SAMPLE_HELD = 5000

_FINAL = ("sent", "failed", "invalid_token", "expired", "cancelled", "suppressed", "skipped")


def zones_for(count: int) -> list[str]:
    """``count`` zones of :data:`ZONES`, evenly spread over the offsets (all of them at most)."""
    if count < 0 or count > len(ZONES):
        raise ValueError(f"--timezones: between 0 and {len(ZONES)}")
    return [ZONES[i * len(ZONES) // count] for i in range(count)]


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")[:2]
    return int(hours) * 60 + int(minutes)


def open_zones(zones: Sequence[str], start: str, end: str, now: datetime) -> list[str]:
    """The zones whose local time at ``now`` is inside ``start``-``end`` (start after end crosses
    midnight), as the gateway decides it (start inclusive, end exclusive)."""
    lo, hi = _minutes(start), _minutes(end)
    out = []
    for zone in zones:
        local = now.astimezone(ZoneInfo(zone))
        m = local.hour * 60 + local.minute
        if (lo <= m < hi) if lo < hi else (m >= lo or m < hi):
            out.append(zone)
    return out


def default_window(zones: Sequence[str], now: datetime, hours: int = 4) -> tuple[str, str]:
    """A window of ``hours`` on whole hours that is open right now for the largest minority of
    ``zones`` (at least one, at most a third): some devices are served now, most are held, and
    the run means the same whenever it runs."""
    best: tuple[int, str, str] | None = None
    limit = max(1, len(zones) // 3)
    for h in range(24):
        start, end = f"{h:02d}:00", f"{(h + hours) % 24:02d}:00"
        n = len(open_zones(zones, start, end, now))
        if 1 <= n <= limit and (best is None or n > best[0]):
            best = (n, start, end)
    if best is None:  # fewer than three zones: any window open for one of them
        local = now.astimezone(ZoneInfo(zones[0]))
        return f"{local.hour:02d}:00", f"{(local.hour + hours) % 24:02d}:00"
    return best[1], best[2]


def _ts(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _channel_devices(api: BenchClient, channel: str) -> int:
    page = await api.json("GET", f"/v1/channels?prefix={channel}&limit=1000")
    for item in page["items"]:
        if item.get("channel") == channel:
            return int(item.get("devices", item.get("count", 0)))
    raise ValueError(f"channel {channel!r} has no devices (seed it: pushgate bench seed --channel …)")


async def _release_times(api: BenchClient, publish_id: str, sample: int) -> tuple[int, set[str]]:
    """(held deliveries read, their distinct ``release_at``) from the first ``sample`` held."""
    seen: set[str] = set()
    read, cursor = 0, None
    while read < sample:
        path = f"/v1/publishes/{publish_id}/deliveries?status=held&limit={min(1000, sample - read)}"
        page = await api.json("GET", path + (f"&cursor={cursor}" if cursor else ""))
        read += len(page["items"])
        seen.update(d["release_at"] for d in page["items"] if d.get("release_at"))
        cursor = page.get("next_cursor")
        if not cursor or not page["items"]:
            break
    return read, seen


async def _follow(
    api: BenchClient, body: dict[str, Any], expected: int, pid: int | None, give_up_after: float
) -> dict[str, Any]:
    """Publish ``body``; poll until all ``expected`` are planned and every one not held has its
    outcome. Answers the publish and the planning figures."""
    rss0 = procstat.rss_mb(pid) if pid else None
    peak_reset = procstat.reset_peak_rss(pid) if pid else False
    cpu0 = procstat.cpu_seconds(pid) if pid else None
    t0 = time.perf_counter()
    pub = await api.json("POST", "/v1/publish", body)
    publish_id = pub["publish_id"]
    planned_at: datetime | None = None
    cpu_planned = rss_peak = None
    rss_peak_seen = 0.0
    while True:
        pub = await api.json("GET", f"/v1/publishes/{publish_id}")
        c = pub["counts"]
        if pid and (rss := procstat.rss_mb(pid)) is not None:
            rss_peak_seen = max(rss_peak_seen, rss)
        if planned_at is None and c["planned"] >= expected:
            planned_at = datetime.now(UTC)
            cpu_planned = procstat.cpu_seconds(pid) if pid else None
            rss_peak = procstat.peak_rss_mb(pid) if pid else None
        settled = c["held"] + sum(c[k] for k in _FINAL) >= c["planned"]
        if planned_at is not None and (settled or pub["status"] in ("completed", "cancelled")):
            break
        if time.perf_counter() - t0 > give_up_after:
            raise TimeoutError(f"publish {publish_id} not planned after {give_up_after:.0f}s: {c}")
        await asyncio.sleep(0.1)
    created = _ts(pub.get("created_at")) or planned_at
    started = _ts(pub.get("started_at"))
    seconds = max((planned_at - created).total_seconds(), 1e-6) if created and planned_at else None
    cpu = None if cpu0 is None or cpu_planned is None else round(cpu_planned - cpu0, 3)
    return {
        "publish_id": publish_id,
        "status": pub["status"],
        "counts": c,
        "planned": c["planned"],
        "held": c["held"],
        "sent_now": c["sent"],
        "not_sent_now": sum(c[k] for k in ("failed", "invalid_token", "expired", "suppressed", "skipped")),
        "planning_seconds": None if seconds is None else round(seconds, 3),
        "queue_wait_seconds": round((started - created).total_seconds(), 3) if started and created else None,
        "planned_per_second": round(c["planned"] / seconds, 1) if seconds else None,
        "us_per_device": round(seconds / c["planned"] * 1e6, 2) if seconds and c["planned"] else None,
        "cpu_seconds": cpu,
        "cpu_us_per_device": round(cpu / c["planned"] * 1e6, 2) if cpu and c["planned"] else None,
        "rss_before_mb": None if rss0 is None else round(rss0, 1),
        "peak_rss_mb": None if rss_peak is None else round(rss_peak, 1),
        "peak_rss_is_lifetime": not peak_reset,
        "peak_rss_sampled_mb": round(rss_peak_seen, 1) if rss_peak_seen else None,
    }


async def _cancel(api: BenchClient, publish_id: str) -> bool:
    status, _h, data = await api.request("POST", f"/v1/publishes/{publish_id}/cancel")
    if status not in (200, 202, 409):
        raise BenchHttpError(f"POST /v1/publishes/{publish_id}/cancel: HTTP {status}: {data[:300]!r}")
    return status != 409


async def run_plan(
    ep: Endpoints,
    *,
    channel: str = "orders",
    timezones: int = 20,
    local_time: str | None = None,
    window: tuple[str, str] | None = None,
    baseline: bool = False,
    keep: bool = False,
    server_pid: int | None = None,
    sample: int = SAMPLE_HELD,
    give_up_after: float = 3600.0,
    audience_filter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish once to ``channel`` with ``local_time`` or ``window`` (default: a window open now
    for a minority of the first ``timezones`` zones of the seed), follow it until planned, read
    the held deliveries' release times, cancel it (unless ``keep``); with ``baseline``, then the
    same publish without a window, for the ratio of planning times."""
    if local_time is not None and window is not None:
        raise ValueError("give --local-time or --window, not both")
    now = datetime.now(UTC)
    zones = zones_for(timezones) if timezones else []
    if local_time is None and window is None:
        window = default_window(zones or ["UTC"], now)
    server_pid = resolve_pid(server_pid, ep.url)
    notification = {"title": "pushgate bench", "body": "planned once, released per zone"}
    recipient: dict[str, Any] = {"type": "channel", "channel": channel}
    if audience_filter is not None:
        recipient = {"type": "filter", "filter": audience_filter}
    body: dict[str, Any] = {"recipients": [recipient], "notification": notification}
    if local_time is not None:
        body["local_time"] = local_time
    else:
        assert window is not None
        body["deliver_between"] = {"start": window[0], "end": window[1]}
    async with BenchClient(ep.url, ep.key) as api:
        if audience_filter is None:
            expected = await _channel_devices(api, channel)
        else:
            from pushgate.bench.audience import count_audience

            expected = (await count_audience(api, [recipient]))[0]
            if not expected:
                raise ValueError("the filter matches no device (seed with: pushgate bench seed --attributes)")
        result = await _follow(api, body, expected, server_pid, give_up_after)
        held_read, releases = await _release_times(api, result["publish_id"], sample)
        result["cancelled"] = False if keep else await _cancel(api, result["publish_id"])
        base = None
        if baseline:
            plain = {k: v for k, v in body.items() if k not in ("local_time", "deliver_between")}
            base = await _follow(api, plain, expected, server_pid, give_up_after)
            base["cancelled"] = await _cancel(api, base["publish_id"])
    open_now = open_zones(zones, *window, now) if window is not None else []
    result.update(
        {
            "mode": "plan",
            "channel": None if audience_filter is not None else channel,
            "filter": audience_filter,
            "devices": expected,
            "timezones": zones,
            "local_time": local_time,
            "window": None if window is None else {"start": window[0], "end": window[1]},
            "zones_open_now": open_now,
            "held_sampled": held_read,
            "distinct_release_at": len(releases),
            "release_at": sorted(releases)[:50],
            "server_pid": server_pid,
            "started_utc": now.isoformat(timespec="seconds"),
            "next_release_in_hours": _hours_until(min(releases), now) if releases else None,
        }
    )
    if base is not None:
        result["baseline"] = base
        ratio = None
        if base["planning_seconds"] and result["planning_seconds"]:
            ratio = round(result["planning_seconds"] / base["planning_seconds"], 3)
        result["ratio_vs_baseline"] = ratio
    return result


def _hours_until(release_at: str, now: datetime) -> float:
    when = _ts(release_at) or now
    return round((when - now) / timedelta(hours=1), 2)
