"""The benchmark modes: seed, admission, e2e and latency.

Each mode is one coroutine that reaches pushgate and the provider lab only over HTTP and
returns a plain dict of results (what ``--json`` writes). The CLI owns printing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pushgate.bench import metrics as bench_metrics
from pushgate.bench import procstat
from pushgate.bench.content import FANOUT_TEMPLATE, device_attributes, ensure_template
from pushgate.bench.http import BenchClient, BenchHttpError

__all__ = [
    "PLATFORMS",
    "Endpoints",
    "percentiles",
    "resolve_pid",
    "run_admission",
    "run_e2e",
    "run_latency",
    "run_seed",
]

#: The platform each provider's bench devices register with.
PLATFORMS = {
    "fcm": "android",
    "apns": "ios",
    "webpush": "web",
    "hms": "android",
    "wns": "windows",
    "mipush": "android",
}

DONE_STATUSES = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True, slots=True)
class Endpoints:
    url: str
    key: str
    lab_url: str


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean in milliseconds of ``samples`` given in seconds (nearest rank)."""
    if not samples:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    s = sorted(samples)

    def rank(p: float) -> float:
        return s[max(0, math.ceil(p * len(s)) - 1)] * 1000

    return {
        "p50_ms": round(rank(0.50), 3),
        "p95_ms": round(rank(0.95), 3),
        "p99_ms": round(rank(0.99), 3),
        "max_ms": round(s[-1] * 1000, 3),
        "mean_ms": round(sum(s) / len(s) * 1000, 3),
    }


def resolve_pid(pid: int | None, url: str) -> int | None:
    """``pid`` if given, else the process listening on ``url``'s port (when /proc shows it)."""
    if pid:
        return pid
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return procstat.pid_listening_on(port)


# --------------------------------------------------------------------------------------- seed


async def _mint_token(lab: BenchClient, provider: str, n: int, run_id: str) -> Any:
    if provider == "webpush":
        return await lab.json("POST", "/webpush/subscriptions", expect=201)
    if provider == "wns":
        return (await lab.json("POST", "/wns/channels", expect=201))["channel_uri"]
    if provider == "apns":
        return secrets.token_hex(32)
    # fcm, hms, mipush: any well-formed token.
    return f"bench-{provider}-{run_id}-{n:09d}"


async def run_seed(
    ep: Endpoints,
    *,
    devices: int,
    channels: int,
    providers: Sequence[str],
    channel_prefix: str = "bench",
    channel: str | None = "orders",
    concurrency: int = 4,
    batch_size: int = 1000,
    timezones: int = 0,
    attributes: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Register ``devices`` devices, round-robin over ``providers`` and over the channels
    ``{prefix}-0 … {prefix}-(channels-1)``; every device also joins ``channel`` if given.
    With ``timezones`` > 0 each device gets, round-robin, one of that many real IANA zones
    (``planning.zones_for``): the audience of ``bench plan``; 0 leaves ``timezone`` unset.
    With ``attributes`` each device also gets a user, locale, app version, tags and meta
    (``content.device_attributes``): the audience of ``bench audience`` and the templates.

    Devices go in ``POST /v1/devices/batch`` requests of ``batch_size``, ``concurrency`` of them
    in flight; the lab mints the Web Push subscriptions and WNS channel URIs for each batch
    first (one lab request per token, up to 64 at a time).
    """
    unknown = [p for p in providers if p not in PLATFORMS]
    if unknown:
        raise ValueError(f"unknown provider(s): {', '.join(unknown)}")
    from pushgate.bench.planning import zones_for

    zones = zones_for(timezones) if timezones else []
    by_zone: Counter[str] = Counter()
    run_id = secrets.token_hex(4)
    batches = iter(range(0, devices, batch_size))
    by_provider: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    mint_slots = asyncio.Semaphore(64)
    async with BenchClient(ep.url, ep.key) as api, BenchClient(ep.lab_url) as lab:

        async def device(n: int) -> dict[str, Any]:
            provider = providers[n % len(providers)]
            chans = [f"{channel_prefix}-{n % channels}"] if channels > 0 else []
            if channel:
                chans.append(channel)
            async with mint_slots:
                token = await _mint_token(lab, provider, n, run_id)
            item = {"provider": provider, "platform": PLATFORMS[provider], "token": token, "channels": chans}
            if zones:
                item["timezone"] = zones[n % len(zones)]
            if attributes:
                item.update(device_attributes(n))
            return item

        async def worker() -> None:
            for first in batches:
                numbers = range(first, min(first + batch_size, devices))
                items = await asyncio.gather(*(device(n) for n in numbers))
                status, _h, data = await api.request("POST", "/v1/devices/batch", {"devices": items})
                if status == 200:
                    by_provider.update(item["provider"] for item in items)
                    by_zone.update(item["timezone"] for item in items if "timezone" in item)
                else:
                    errors[str(status)] += len(items)
                    if not by_provider:  # nothing has worked yet: a setup problem, stop at once
                        raise BenchHttpError(f"POST /v1/devices/batch: HTTP {status}: {data[:300]!r}")
                if progress is not None:
                    progress(len(items))

        started = time.perf_counter()
        workers = max(1, min(concurrency, math.ceil(devices / batch_size)))
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - started
    registered = sum(by_provider.values())
    return {
        "mode": "seed",
        "devices": registered,
        "by_provider": {p: by_provider[p] for p in providers if by_provider[p]},
        "errors": dict(errors),
        "channels": [f"{channel_prefix}-{i}" for i in range(channels)][:10]
        + (["…"] if channels > 10 else []),
        "channel": channel,
        "batch_size": batch_size,
        "by_timezone": {z: by_zone[z] for z in zones if by_zone[z]},
        "attributes": attributes,
        "seconds": round(elapsed, 3),
        "devices_per_second": round(registered / elapsed, 1) if elapsed > 0 else 0.0,
    }


# ---------------------------------------------------------------------------------- admission


def _notification(seq: int) -> dict[str, Any]:
    return {"title": "pushgate bench", "body": f"message {seq}", "data": {"seq": str(seq)}}


async def run_admission(
    ep: Endpoints, *, concurrency: int, duration: float, channel: str = "bench-admission"
) -> dict[str, Any]:
    """Publish to ``channel`` from ``concurrency`` loops for ``duration`` seconds.

    A 429 is counted and its ``Retry-After`` honoured by that loop (capped at the time left):
    "as fast as allowed" includes the gateway's own backpressure.
    """
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    seq = itertools.count()
    loop = asyncio.get_running_loop()
    async with BenchClient(ep.url, ep.key) as api:
        deadline = loop.time() + duration

        async def worker() -> None:
            while (now := loop.time()) < deadline:
                body = {
                    "recipients": [{"type": "channel", "channel": channel}],
                    "notification": _notification(next(seq)),
                }
                t0 = time.perf_counter()
                try:
                    status, headers, _ = await api.request("POST", "/v1/publish", body)
                except BenchHttpError:
                    statuses["transport_error"] += 1
                    continue
                dt = time.perf_counter() - t0
                statuses[str(status)] += 1
                if status == 202:
                    latencies.append(dt)
                elif status == 429:
                    try:
                        wait = float(headers.get("retry-after", "1"))
                    except ValueError:
                        wait = 1.0
                    await asyncio.sleep(max(0.0, min(wait, deadline - now)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    accepted = statuses.get("202", 0)
    return {
        "mode": "admission",
        "concurrency": concurrency,
        "channel": channel,
        "seconds": round(elapsed, 3),
        "accepted": accepted,
        "accepted_per_second": round(accepted / elapsed, 1) if elapsed > 0 else 0.0,
        "statuses": dict(statuses),
        "errors": {k: v for k, v in statuses.items() if k != "202"},
        "latency": percentiles(latencies),
    }


# ---------------------------------------------------------------------------------------- e2e


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _lab_total(stats: dict[str, int]) -> int:
    return sum(v for v in stats.values() if isinstance(v, int))


def _recorded(counts: dict[str, int]) -> int:
    """Deliveries with a final outcome: what a dry run's rate is counted in (it sends none)."""
    return sum(counts.get(k, 0) for k in ("sent", "failed", "invalid_token", "expired", "dry_run"))


async def run_e2e(
    ep: Endpoints,
    *,
    channel: str = "orders",
    server_pid: int | None = None,
    lab_pid: int | None = None,
    sample_interval: float = 0.25,
    give_up_after: float = 3600.0,
    template: bool = False,
    dry_run: bool = False,
    reset_peak: bool = False,
) -> dict[str, Any]:
    """Reset the lab counters, publish once to ``channel``, follow the publish to its end.

    ``template``: the publish uses ``content.FANOUT_TEMPLATE`` (created or replaced first),
    rendered per device from its meta and locale. ``dry_run``: a dry run of the same publish
    (nothing is sent; its ``dry_run`` count is the would-be sends). ``reset_peak``: the peak RSS
    is the run's (VmHWM reset at the publish), not the process's whole life (the seed's too)."""
    server_pid = resolve_pid(server_pid, ep.url)
    lab_pid = resolve_pid(lab_pid, ep.lab_url)
    body: dict[str, Any] = {"recipients": [{"type": "channel", "channel": channel}]}
    async with BenchClient(ep.url, ep.key) as api, BenchClient(ep.lab_url) as lab:
        template_version = None
        if template:
            template_version = await ensure_template(api, FANOUT_TEMPLATE)
            tdata = {"discount": 20, "campaign": "bench"}
            body["template"] = {"id": FANOUT_TEMPLATE["id"], "data": tdata}
        else:
            body["notification"] = _notification(0)
        if dry_run:
            body["dry_run"] = True
        await lab.json("DELETE", "/ledger")
        metrics0 = await bench_metrics.scrape(api)
        cpu0 = procstat.cpu_seconds(server_pid) if server_pid else None
        lab_cpu0 = procstat.cpu_seconds(lab_pid) if lab_pid else None
        rss_before = procstat.rss_mb(server_pid) if server_pid else None
        peak_reset = bool(reset_peak and server_pid and procstat.reset_peak_rss(server_pid))
        t0 = time.perf_counter()
        accepted = await api.json("POST", "/v1/publish", body)
        # A dry run that closed within the POST's wait answers the publish object (``id``).
        publish_id = accepted.get("publish_id") or accepted["id"]
        timeline: list[dict[str, Any]] = []
        next_sample = 0.0
        peak_rss_seen = 0.0
        while True:
            pub = await api.json("GET", f"/v1/publishes/{publish_id}")
            elapsed = time.perf_counter() - t0
            done = pub["status"] in DONE_STATUSES
            if elapsed >= next_sample or done:
                counts = pub.get("counts", {})
                stats = await lab.json("GET", "/ledger/stats")
                final = sum(
                    counts.get(k, 0) for k in ("sent", "failed", "invalid_token", "expired", "dry_run")
                )
                rss = procstat.rss_mb(server_pid) if server_pid else None
                peak_rss_seen = max(peak_rss_seen, rss or 0.0)
                timeline.append(
                    {
                        "t": round(elapsed, 3),
                        "status": pub["status"],
                        "planned": counts.get("planned", 0),
                        "sent": counts.get("sent", 0),
                        "failed": counts.get("failed", 0),
                        "retrying": counts.get("retrying", 0),
                        "outstanding": counts.get("planned", 0) - final,
                        "lab_received": _lab_total(stats),
                        "rss_mb": None if rss is None else round(rss, 1),
                    }
                )
                next_sample = elapsed + sample_interval
            if done:
                break
            if elapsed > give_up_after:
                raise TimeoutError(f"publish {publish_id} not done after {give_up_after:.0f}s: {pub}")
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - t0
        cpu1 = procstat.cpu_seconds(server_pid) if server_pid else None
        lab_cpu1 = procstat.cpu_seconds(lab_pid) if lab_pid else None
        lab_stats = await lab.json("GET", "/ledger/stats")
        breakdown = bench_metrics.summarize(metrics0, await bench_metrics.scrape(api))
    counts = pub.get("counts", {})
    created, completed = _ts(pub.get("created_at")), _ts(pub.get("completed_at"))
    seconds = completed - created if created is not None and completed is not None else wall
    sent = counts.get("sent", 0)
    cpu = None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3)
    lab_cpu = None if lab_cpu0 is None or lab_cpu1 is None else round(lab_cpu1 - lab_cpu0, 3)
    peak = procstat.peak_rss_mb(server_pid) if server_pid else None
    # Rates between samples: the throughput curve.
    for prev, cur in itertools.pairwise(timeline):
        dt = cur["t"] - prev["t"]
        cur["pushes_per_second"] = round((cur["sent"] - prev["sent"]) / dt, 1) if dt > 0 else 0.0
    return {
        "mode": "e2e",
        "publish_id": publish_id,
        "channel": channel,
        "template": FANOUT_TEMPLATE["id"] if template else None,
        "template_version": template_version,
        "dry_run": dry_run,
        "status": pub["status"],
        "planned": counts.get("planned", 0),
        "sent": sent,
        "failed": counts.get("failed", 0),
        "invalid_token": counts.get("invalid_token", 0),
        "expired": counts.get("expired", 0),
        "dry_run_recorded": counts.get("dry_run", 0),
        "recorded_per_second": round(_recorded(counts) / seconds, 1) if seconds > 0 else 0.0,
        "by_provider": pub.get("by_provider", {}),
        "lab_received": _lab_total(lab_stats),
        "lab_by_provider": {k: v for k, v in lab_stats.items() if v},
        "seconds": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "pushes_per_second": round(sent / seconds, 1) if seconds > 0 else 0.0,
        "server_pid": server_pid,
        "cpu_seconds": cpu,
        "cpu_seconds_per_10k": round(cpu / sent * 10_000, 3) if cpu is not None and sent else None,
        "peak_rss_mb": None if peak is None else round(peak, 1),
        "peak_rss_reset": peak_reset,
        "rss_before_mb": None if rss_before is None else round(rss_before, 1),
        "peak_rss_sampled_mb": round(peak_rss_seen, 1) if peak_rss_seen else None,
        "lab_pid": lab_pid,
        "lab_cpu_seconds": lab_cpu,
        # From the gateway's /metrics (the difference over the run): answers by error class,
        # provider request latency per chunk, and the outcome commit ("status write") latency.
        **breakdown,
        "timeline": timeline,
    }


# ------------------------------------------------------------------------------------ latency


async def _latency_device(api: BenchClient, lab: BenchClient) -> str:
    token = f"bench-latency-{secrets.token_hex(8)}"
    body = {"provider": "fcm", "platform": "android", "token": token}
    return str((await api.json("POST", "/v1/devices", body))["device"]["id"])


async def run_latency(
    ep: Endpoints, *, device_id: str | None = None, count: int = 200, poll: float = 0.0005
) -> dict[str, Any]:
    """Publish to one device ``count`` times, one at a time, timing publish → the lab's ledger
    counter moving. Without ``device_id`` an FCM device is registered for the run."""
    samples: list[float] = []
    timeouts = 0
    async with BenchClient(ep.url, ep.key) as api, BenchClient(ep.lab_url) as lab:
        if device_id is None:
            device_id = await _latency_device(api, lab)
        before = _lab_total(await lab.json("GET", "/ledger/stats"))
        for i in range(count):
            body = {
                "recipients": [{"type": "device", "device_id": device_id}],
                "notification": _notification(i),
            }
            t0 = time.perf_counter()
            await api.json("POST", "/v1/publish", body)
            while True:
                total = _lab_total(await lab.json("GET", "/ledger/stats"))
                if total > before:
                    samples.append(time.perf_counter() - t0)
                    before = total
                    break
                if time.perf_counter() - t0 > 10:
                    timeouts += 1
                    break
                await asyncio.sleep(poll)
    return {
        "mode": "latency",
        "device_id": device_id,
        "count": count,
        "received": len(samples),
        "timeouts": timeouts,
        "latency": percentiles(samples),
    }
