"""``pushgate bench transactional``: many one-user publishes (a login code, an order update),
each to one device, followed until the lab counted every notification.

What issue 10 measures: publishes admitted per second, notifications delivered per second end to
end, pushgate's CPU per notification, and publish → lab latency. Publishes go one per
``POST /v1/publish`` or, with ``batch``, ``batch`` per ``POST /v1/publish/batch``.

With ``template`` (issue 12) the devices are registered with locales and meta
(``content.device_attributes``) and each publish names ``content.TX_TEMPLATE`` instead of
giving a notification: admission renders its three locale variants, the dispatcher renders it per
device (locale choice, ``device.meta.name``, ``user.id``). The same run without it is the
plain figure to compare with.

Latency: the lab's ledger keeps each delivery's arrival time unless it runs ``--lean``; then only
counters move, so the run polls ``/ledger/stats`` and pairs the k-th arrival with the k-th
publish sent (exact when deliveries arrive in publish order, an approximation otherwise). The
result says which (``latency_source``).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from pushgate.bench import metrics as bench_metrics
from pushgate.bench import procstat
from pushgate.bench.content import TX_TEMPLATE, device_attributes, ensure_template
from pushgate.bench.http import BenchClient, BenchHttpError
from pushgate.bench.runner import PLATFORMS, Endpoints, percentiles, resolve_pid

__all__ = ["device_token", "run_transactional"]

#: How often the lab's counters are read while the run goes on (seconds).
POLL_INTERVAL = 0.002


def device_token(prefix: str, n: int) -> str:
    """The token of user ``n``'s device: the same on every run, so a second run reuses the devices."""
    return f"bench-{prefix}-{n:09d}"


def _user(prefix: str, n: int) -> str:
    return f"{prefix}-{n}"


async def _register(api: BenchClient, n: int, prefix: str, provider: str, attributes: bool = False) -> None:
    """Devices ``0..n-1``, device ``i`` of user ``<prefix>-<i>``, 1000 a request, 4 in flight
    (an already registered token is updated, so this also reuses a previous run's devices);
    with ``attributes`` also device ``i``'s locale, tags, meta and app version."""
    starts = iter(range(0, n, 1000))

    async def worker() -> None:
        for first in starts:
            items = [
                {
                    **({k: v for k, v in device_attributes(i).items() if k != "user"} if attributes else {}),
                    "provider": provider,
                    "platform": PLATFORMS[provider],
                    "token": device_token(prefix, i),
                    "user": _user(prefix, i),
                }
                for i in range(first, min(first + 1000, n))
            ]
            await api.json("POST", "/v1/devices/batch", {"devices": items})

    await asyncio.gather(*(worker() for _ in range(4)))


def _publish(prefix: str, n: int, template: bool = False) -> dict[str, Any]:
    """Publish ``n``: to user ``n``, a plain notification or the bench template (its current
    version, as an application names it: by id only) with the same code and number as data."""
    recipients = [{"type": "user", "user": _user(prefix, n)}]
    if template:
        data = {"code": f"{n:06d}", "seq": str(n)}
        return {"recipients": recipients, "template": {"id": TX_TEMPLATE["id"], "data": data}}
    return {
        "recipients": recipients,
        "notification": {"title": "Your code", "body": f"{n:06d}", "data": {"seq": str(n)}},
    }


def _retry_after(headers: dict[str, str]) -> float:
    try:
        return max(0.05, float(headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


class _Publisher:
    """Sends publishes ``0..n-1`` from ``concurrency`` loops, ``batch`` per request (0: the
    single route), retrying a 429 after its ``Retry-After``; records when each was sent."""

    def __init__(self, api: BenchClient, prefix: str, n: int, batch: int, template: bool = False) -> None:
        self.api, self.prefix, self.n, self.batch, self.template = api, prefix, n, batch, template
        self.sent_at: list[float] = [math.nan] * n
        self.statuses: Counter[str] = Counter()
        self.admitted = 0
        self.last_admitted_at = 0.0
        size = max(1, batch)
        self._chunks = iter(range(0, n, size))

    async def _send(self, first: int) -> None:
        last = min(first + max(1, self.batch), self.n)
        while True:
            t0 = time.perf_counter()
            for i in range(first, last):
                self.sent_at[i] = t0
            try:
                if self.batch:
                    body = {
                        "publishes": [_publish(self.prefix, i, self.template) for i in range(first, last)]
                    }
                    status, headers, data = await self.api.request("POST", "/v1/publish/batch", body)
                else:
                    status, headers, data = await self.api.request(
                        "POST", "/v1/publish", _publish(self.prefix, first, self.template)
                    )
            except BenchHttpError:
                self.statuses["transport_error"] += 1
                continue
            self.statuses[str(status)] += 1
            if status == 429:
                await asyncio.sleep(_retry_after(headers))
                continue
            if status != 202:
                raise BenchHttpError(f"publish: HTTP {status}: {data[:300]!r}")
            ok = int(msgspec.json.decode(data)["admitted"]) if self.batch else 1
            self.statuses["item_errors"] += (last - first) - ok
            self.admitted += ok
            self.last_admitted_at = time.perf_counter()
            return

    async def run(self, concurrency: int) -> None:
        async def worker() -> None:
            for first in self._chunks:
                await self._send(first)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _lab_total(stats: dict[str, Any]) -> int:
    return sum(v for v in stats.values() if isinstance(v, int))


class _LabWatch:
    """Polls the lab's counters: when each arrival happened (its k-th step) and when all had."""

    def __init__(self, lab: BenchClient) -> None:
        self.lab = lab
        self.steps: list[tuple[float, int]] = []  # (perf_counter, total) whenever the total moved

    async def until(self, n: int, give_up_after: float) -> float:
        """Poll until the lab counted ``n``; the moment it did (``perf_counter``)."""
        deadline = time.perf_counter() + give_up_after
        last = -1
        while True:
            total = _lab_total(await self.lab.json("GET", "/ledger/stats"))
            now = time.perf_counter()
            if total != last:
                self.steps.append((now, total))
                last = total
            if total >= n:
                return now
            if now > deadline:
                raise TimeoutError(f"the lab counted {total} of {n} notifications after {give_up_after:.0f}s")
            await asyncio.sleep(POLL_INTERVAL)

    def arrivals(self, n: int) -> list[float]:
        """When the k-th notification arrived, k = 1..n (the first poll that saw total >= k)."""
        totals = [t for _, t in self.steps]
        return [self.steps[min(bisect.bisect_left(totals, k), len(totals) - 1)][0] for k in range(1, n + 1)]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def _exact_latencies(
    lab: BenchClient, prefix: str, sent_wall: list[float], provider: str
) -> list[float] | None:
    """Per-notification latency from the ledger's arrival times (None when the lab is lean)."""
    ledger = await lab.json("GET", f"/ledger?provider={provider}")  # every item: no ``limit``
    items = ledger.get("items") or []
    if len(items) < len(sent_wall):
        return None
    head = f"bench-{prefix}-"
    out = []
    for item in items:
        token = str(item.get("token", ""))
        if token.startswith(head):
            n = int(token[len(head) :])
            if n < len(sent_wall):
                out.append(_ts(item["received_at"]) - sent_wall[n])
    return out if len(out) == len(sent_wall) else None


async def run_transactional(
    ep: Endpoints,
    *,
    publishes: int,
    concurrency: int = 32,
    batch: int = 0,
    provider: str = "fcm",
    prefix: str = "tx",
    register: bool = True,
    server_pid: int | None = None,
    lab_pid: int | None = None,
    give_up_after: float = 600.0,
    template: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Register ``publishes`` one-device users (unless ``register`` is false), reset the lab's
    counters, then publish once to each user and follow until the lab counted them all
    (``template``: with the bench template, on devices registered with locales and meta)."""
    if provider not in PLATFORMS:
        raise ValueError(f"unknown provider {provider!r}: one of {', '.join(PLATFORMS)}")
    server_pid = resolve_pid(server_pid, ep.url)
    lab_pid = resolve_pid(lab_pid, ep.lab_url)
    say = progress or (lambda _: None)
    async with BenchClient(ep.url, ep.key) as api, BenchClient(ep.lab_url) as lab:
        if register:
            say(f"registering {publishes} devices of {publishes} users")
            await _register(api, publishes, prefix, provider, attributes=template)
        version = await ensure_template(api, TX_TEMPLATE) if template else None
        await lab.json("DELETE", "/ledger")
        metrics0 = await bench_metrics.scrape(api)
        cpu0 = procstat.cpu_seconds(server_pid) if server_pid else None
        lab_cpu0 = procstat.cpu_seconds(lab_pid) if lab_pid else None
        publisher = _Publisher(api, prefix, publishes, batch, template)
        watch = _LabWatch(lab)
        say(
            f"publishing {publishes}, {concurrency} requests in flight"
            + (f", {batch} a request" if batch else "")
        )
        wall0, t0 = time.time(), time.perf_counter()
        watching = asyncio.create_task(watch.until(publishes, give_up_after))
        await publisher.run(concurrency)
        if publisher.admitted < publishes:
            watching.cancel()
            raise RuntimeError(f"only {publisher.admitted} of {publishes} publishes were admitted")
        done_at = await watching
        cpu1 = procstat.cpu_seconds(server_pid) if server_pid else None
        lab_cpu1 = procstat.cpu_seconds(lab_pid) if lab_pid else None
        breakdown = bench_metrics.summarize(metrics0, await bench_metrics.scrape(api))
        sent_wall = [wall0 + (s - t0) for s in publisher.sent_at]
        latencies = await _exact_latencies(lab, prefix, sent_wall, provider)
    source = "ledger"
    if latencies is None:
        source = "counter"
        latencies = [a - s for a, s in zip(watch.arrivals(publishes), sorted(publisher.sent_at), strict=True)]
    admit_s = publisher.last_admitted_at - t0
    e2e_s = done_at - t0
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    peak = procstat.peak_rss_mb(server_pid) if server_pid else None
    return {
        "mode": "transactional",
        "publishes": publishes,
        "concurrency": concurrency,
        "batch": batch,
        "provider": provider,
        "template": TX_TEMPLATE["id"] if template else None,
        "template_version": version,
        "admitted": publisher.admitted,
        "statuses": dict(publisher.statuses),
        "admit_seconds": round(admit_s, 3),
        "admitted_per_second": round(publishes / admit_s, 1) if admit_s > 0 else 0.0,
        "seconds": round(e2e_s, 3),
        "notifications_per_second": round(publishes / e2e_s, 1) if e2e_s > 0 else 0.0,
        "server_pid": server_pid,
        "cpu_seconds": None if cpu is None else round(cpu, 3),
        "cpu_ms_per_notification": None if cpu is None else round(cpu / publishes * 1000, 3),
        "peak_rss_mb": None if peak is None else round(peak, 1),
        "lab_pid": lab_pid,
        "lab_cpu_seconds": None if lab_cpu0 is None or lab_cpu1 is None else round(lab_cpu1 - lab_cpu0, 3),
        "latency_source": source,
        "latency": percentiles(latencies),
        **breakdown,
    }
