"""``pushgate bench audience``: the latency of ``POST /v1/audience/count`` (issue 12).

A count is what a user asks before a campaign ("how many would this reach?"), one question at a
time, so the calls are sequential: each one's latency is the statement's time plus one HTTP
round trip. The first ``warmup`` calls of each filter are left out (the database's page cache
and the gateway's first compile of the statement), the answers of all calls must agree (the
devices do not change during the run), and each filter reports p50/p95/p99/max of ``calls``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from pushgate.bench import procstat
from pushgate.bench.http import BenchClient, BenchHttpError
from pushgate.bench.runner import Endpoints, percentiles, resolve_pid

__all__ = ["count_audience", "run_audience"]


async def count_audience(api: BenchClient, recipients: list[dict[str, Any]]) -> tuple[int, int]:
    """``(devices, users)`` the recipients would reach now."""
    status, _h, data = await api.request("POST", "/v1/audience/count", {"recipients": recipients})
    if status != 200:
        raise BenchHttpError(f"POST /v1/audience/count: HTTP {status}: {data[:300]!r}")
    answer = msgspec.json.decode(data)
    return int(answer["devices"]), int(answer["users"])


async def run_audience(
    ep: Endpoints,
    *,
    filters: Sequence[tuple[str, dict[str, Any]]],
    calls: int = 200,
    warmup: int = 5,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Count each named filter ``warmup + calls`` times, one call at a time; per filter the
    devices and users it reaches, the latency percentiles and the gateway's CPU per call."""
    server_pid = resolve_pid(server_pid, ep.url)
    results: list[dict[str, Any]] = []
    async with BenchClient(ep.url, ep.key) as api:
        for name, flt in filters:
            recipients = [{"type": "filter", "filter": flt}]
            answers: set[tuple[int, int]] = set()
            for _ in range(warmup):
                answers.add(await count_audience(api, recipients))
            samples: list[float] = []
            cpu0 = procstat.cpu_seconds(server_pid) if server_pid else None
            for _ in range(calls):
                t0 = time.perf_counter()
                answers.add(await count_audience(api, recipients))
                samples.append(time.perf_counter() - t0)
            cpu1 = procstat.cpu_seconds(server_pid) if server_pid else None
            if len(answers) != 1:
                raise RuntimeError(f"filter {name}: the counts changed during the run: {sorted(answers)}")
            devices, users = answers.pop()
            cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            results.append(
                {
                    "name": name,
                    "filter": flt,
                    "devices": devices,
                    "users": users,
                    "calls": calls,
                    "latency": percentiles(samples),
                    "cpu_ms_per_call": None if cpu is None else round(cpu / calls * 1000, 3),
                }
            )
    return {"mode": "audience", "server_pid": server_pid, "warmup": warmup, "filters": results}
