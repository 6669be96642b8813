"""``bench e2e --baseline/--raw``: the comparisons run after pushgate's own e2e, in the same run.

Each comparison sends the same notification to the same devices (the channel's active devices,
read back from the gateway) at the same lab, after resetting the lab's counters, and reports its
rate, the lab's count and CPU time, and pushgate's rate as a ratio of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pushgate.bench import procstat
from pushgate.bench.http import BenchClient
from pushgate.bench.runner import Endpoints, _lab_total
from pushgate.bench.targets import LabCredentials, channel_targets, load_lab_credentials

__all__ = ["run_comparisons"]


async def _measured(
    lab: BenchClient, lab_pid: int | None, run: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    await lab.json("DELETE", "/ledger")
    cpu0 = procstat.cpu_seconds(lab_pid) if lab_pid else None
    result = await run()
    cpu1 = procstat.cpu_seconds(lab_pid) if lab_pid else None
    result["lab_received"] = _lab_total(await lab.json("GET", "/ledger/stats"))
    result["lab_cpu_seconds"] = None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3)
    return result


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


async def run_comparisons(
    ep: Endpoints,
    e2e: dict[str, Any],
    *,
    baseline: bool,
    raw: bool,
    lab_credentials: Path,
    raw_concurrency: int = 256,
) -> dict[str, Any]:
    """Add ``baseline``/``raw`` sections, their rates and ratios to the ``e2e`` result."""
    creds: LabCredentials = load_lab_credentials(lab_credentials)
    async with BenchClient(ep.url, ep.key) as api, BenchClient(ep.lab_url) as lab:
        targets = await channel_targets(api, e2e["channel"])
        lab_pid = e2e.get("lab_pid")
        if baseline:
            from pushgate.bench.baseline import run_baseline_sends

            b = await _measured(lab, lab_pid, lambda: run_baseline_sends(creds, targets))
            e2e["baseline"] = b
            e2e["baseline_pushes_per_second"] = b["pushes_per_second"]
            e2e["ratio_vs_baseline"] = _ratio(e2e["pushes_per_second"], b["pushes_per_second"])
        if raw:
            from pushgate.bench.raw import blast, render_requests

            requests = await asyncio.to_thread(render_requests, creds, targets)

            async def run_blast() -> dict[str, Any]:
                return await asyncio.to_thread(
                    blast, requests, concurrency=raw_concurrency, ca_file=str(creds.apns_ca_file)
                )

            r = await _measured(lab, lab_pid, run_blast)
            e2e["raw"] = r
            e2e["raw_requests_per_second"] = r["requests_per_second"]
            e2e["ratio_vs_raw"] = _ratio(e2e["pushes_per_second"], r["requests_per_second"])
    return e2e
