"""What planning decides about a page of resolved recipients, shared by the planner and by
admission (which plans small publishes in its own transaction): one set of rules, two callers.
"""

from __future__ import annotations

from typing import Any

from pushgate.domain.jobs import PlanStats
from pushgate.domain.status import DeliveryStatus


def deadline(
    request: dict[str, Any], created_at: float, send_at: float | None, expire_at: float | None
) -> float | None:
    """No attempt after ``expire_at`` or after the notification's TTL ran out, the TTL counted
    from when the publish was due (its ``send_at`` when scheduled, else its admission)."""
    limits: list[float] = [] if expire_at is None else [expire_at]
    ttl = (request.get("notification") or {}).get("ttl_seconds")
    if ttl:
        limits.append(max(created_at, send_at or 0.0) + ttl)
    return min(limits) if limits else None


def mark_unsendable(
    rows: list[dict[str, Any]], *, expired: bool, configured: set[str] | frozenset[str], app_name: str
) -> None:
    """Mark the rows that are final at planning: the publish expired, or no credentials."""
    for r in rows:
        if expired:
            r["status"], r["error_code"] = DeliveryStatus.EXPIRED.value, "expired"
        elif r["provider"] not in configured:
            r["status"], r["error_code"] = DeliveryStatus.FAILED.value, "no_credentials"
            r["error_message"] = f"app {app_name!r} has no {r['provider']} credentials"


def target_row(r: dict[str, Any]) -> list[str]:
    """A recipient in a dispatch job's compact form (``providers.base.Target.row``, which this
    layer may not import; a unit test holds the two equal)."""
    env = r.get("environment")
    return [r["recipient_id"], r["token"], env] if env else [r["recipient_id"], r["token"]]


#: Statuses a row is planned in that need no send now, each moving its own counter.
_COUNTED_AT_PLANNING = frozenset(
    {DeliveryStatus.EXPIRED, DeliveryStatus.SUPPRESSED, DeliveryStatus.SKIPPED, DeliveryStatus.HELD}
)


def tally(
    rows: list[dict[str, Any]],
    fresh: set[str],
    stats: PlanStats,
    held: dict[tuple[str, float], list[list[str]]] | None = None,
) -> tuple[dict[str, dict[str, int]], dict[str, list[list[str]]]]:
    """The counter deltas by provider for the newly planned rows (``fresh``: the recipient ids
    the insert reported new; a repeat inside the page counts once) and their targets by
    provider; ``stats`` moves with them.

    Rows policy holds (``held``, with ``release_at``) go into ``held`` by (provider, release
    time) instead: one release batch per time zone's window start, not a timer per device."""
    per_provider: dict[str, dict[str, int]] = {}
    batches: dict[str, list[list[str]]] = {}
    for r in rows:
        if r["recipient_id"] not in fresh:
            continue
        fresh.discard(r["recipient_id"])
        c = per_provider.setdefault(r["provider"], {"planned": 0, "failed": 0, "expired": 0})
        c["planned"] += 1
        status = r.get("status")
        if status == DeliveryStatus.FAILED:
            c["failed"] += 1
            stats.no_credentials += 1
        elif status in _COUNTED_AT_PLANNING:
            c[status] = c.get(status, 0) + 1
            if status == DeliveryStatus.HELD:
                if held is None:
                    raise ValueError("a held row needs a place for its release batch")
                held.setdefault((r["provider"], r["release_at"]), []).append(target_row(r))
                stats.dispatched += 1
        else:
            batches.setdefault(r["provider"], []).append(target_row(r))
        stats.planned += 1
    for targets in batches.values():
        stats.dispatched += len(targets)
    return per_provider, batches
