"""gorush's ``GET /api/stat/app`` and ``GET /api/stat/go`` answers, from pushgate's figures.

``stat/app``: gorush counts pushes in its own stat store since it started; pushgate has the
app's publishes and their per-provider counters, so the figures are the app's (every publish of
the app, through any API, that retention still keeps): ``push_success`` is ``sent``,
``push_error`` is ``failed + invalid_token + expired``; a *task* is a publish (submitted: all,
success: ``completed``, failure: ``failed`` or ``expired``); ``total_count`` is the planned
deliveries; ``busy_workers`` is 0 (pushgate's workers are not counted per process).

``stat/go``: gorush's Go runtime figures; pushgate answers the same keys with this Python
process's own where one has a meaning (docs/compat.md lists which) and 0 elsewhere.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import resource
import sys
import time
from typing import Any

from pushgate import __version__
from pushgate.store.db import Database
from pushgate.store.publishes.app_totals import app_totals

#: gorush's platform names in ``stat/app`` → the native provider behind each.
_PLATFORMS = {"ios": "apns", "android": "fcm", "huawei": "hms"}
_ERRORS = ("failed", "invalid_token", "expired")


async def app_stat(db: Database, app_id: str) -> dict[str, Any]:
    totals = await app_totals(db, app_id)
    out: dict[str, Any] = {
        "version": __version__,
        "busy_workers": 0,
        "success_tasks": totals.by_status.get("completed", 0),
        "failure_tasks": totals.by_status.get("failed", 0) + totals.by_status.get("expired", 0),
        "submitted_tasks": sum(totals.by_status.values()),
        "total_count": sum(c.get("planned", 0) for c in totals.by_provider.values()),
    }
    for name, provider in _PLATFORMS.items():
        counts = totals.by_provider.get(provider, {})
        out[name] = {
            "push_success": counts.get("sent", 0),
            "push_error": sum(counts.get(c, 0) for c in _ERRORS),
        }
    return out


def _rss_bytes() -> int:
    """Resident memory now (Linux ``/proc``), else the peak ``getrusage`` reports."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def go_stat() -> dict[str, Any]:
    """gorush's (``fukata/golang-stats-api-handler``) keys with this process's figures."""
    rss = _rss_bytes()
    collections = sum(s.get("collections", 0) for s in gc.get_stats())
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = 0
    return {
        "time": time.time_ns(),
        "go_version": f"python{platform.python_version()}",
        "go_os": sys.platform,
        "go_arch": platform.machine(),
        "cpu_num": os.cpu_count() or 1,
        "goroutine_num": tasks,
        "gomaxprocs": 1,
        "cgo_call_num": 0,
        "memory_alloc": rss,
        "memory_total_alloc": rss,
        "memory_sys": rss,
        "memory_lookups": 0,
        "memory_mallocs": 0,
        "memory_frees": 0,
        "memory_stack": 0,
        "heap_alloc": rss,
        "heap_sys": rss,
        "heap_idle": 0,
        "heap_inuse": rss,
        "heap_released": 0,
        "heap_objects": len(gc.get_objects()),
        "gc_next": 0,
        "gc_last": 0,
        "gc_num": collections,
        "gc_per_second": 0,
        "gc_pause_per_second": 0,
        "gc_pause": [],
    }
