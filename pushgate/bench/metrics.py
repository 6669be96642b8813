"""What the gateway's ``/metrics`` say about one benchmark run: the difference of two scrapes.

Gives the e2e report its error classes, provider request latency and status write latency
without any bench-only hook in the server (prometheus-client's own parser reads the text).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pushgate.bench.http import BenchClient

#: (metric family, label set without ``le``) -> {sample suffix or bucket bound: value}
Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, float]]

_FAMILIES = ("pushgate_deliveries", "pushgate_provider_send_seconds", "pushgate_status_write_seconds")


async def scrape(api: BenchClient) -> Snapshot:
    status, _, body = await api.request("GET", "/metrics")
    if status != 200:
        return {}
    snap: Snapshot = defaultdict(dict)
    for family in text_string_to_metric_families(body.decode()):
        if family.name not in _FAMILIES:
            continue
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            key = s.labels.get("le", s.name[len(family.name) :] or "value")
            snap[(family.name, labels)][key] = float(s.value)
    return dict(snap)


def _diff(before: Snapshot, after: Snapshot) -> Snapshot:
    out: Snapshot = {}
    for key, values in after.items():
        old = before.get(key, {})
        out[key] = {k: v - old.get(k, 0.0) for k, v in values.items()}
    return out


def _histogram(values: dict[str, float]) -> dict[str, Any] | None:
    """Mean and bucket-bound p50/p99 ("at most this many ms") of one histogram's run."""
    count = values.get("_count", 0.0)
    if count <= 0:
        return None
    bounds = sorted((float(k), v) for k, v in values.items() if not k.startswith("_") and k != "value")

    def bound(q: float) -> float | None:
        for le, cumulative in bounds:
            if cumulative >= q * count:
                return None if math.isinf(le) else round(le * 1000, 1)
        return None

    return {
        "count": int(count),
        "mean_ms": round(values.get("_sum", 0.0) / count * 1000, 2),
        "p50_le_ms": bound(0.5),
        "p99_le_ms": bound(0.99),
    }


def summarize(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """``error_classes``, ``provider_send`` (per provider) and ``status_write`` for the run."""
    d = _diff(before, after)
    classes: dict[str, int] = defaultdict(int)
    send: dict[str, Any] = {}
    write: dict[str, Any] | None = None
    for (family, labels), values in d.items():
        lab = dict(labels)
        if family == "pushgate_deliveries":
            n = int(values.get("_total", 0.0))
            if n:
                classes[lab.get("error_class", "?")] += n
        elif family == "pushgate_provider_send_seconds":
            h = _histogram(values)
            if h:
                send[lab.get("provider", "?")] = h
        elif family == "pushgate_status_write_seconds":
            write = _histogram(values)
    return {"error_classes": dict(classes), "provider_send": send, "status_write": write}
