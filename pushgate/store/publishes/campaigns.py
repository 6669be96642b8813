"""Campaigns, failure reasons and dry-run samples (docs/campaigns.md): the SQL behind them.

Failure reasons are read from the delivery records themselves (``failed``, ``invalid_token``,
``expired``), grouped by ``(error_class, error_code)``: ``ix_deliveries_publish_status`` finds
exactly those rows of each publish, and at most ``MAX_REASON_ROWS`` of them are read (a
``LIMIT`` under the ``GROUP BY``): when credentials break, every delivery of a large publish
fails, and reading them all on every read would cost the publish's size (review finding 6).
Beyond the bound the reasons are those of the first records the index yields and the answer says
``reasons_truncated`` (the counters still have the totals). Only a single publish's read (and
campaign stats) reads them; a page of ``GET /v1/publishes`` reads none. A campaign's stats sum
the counters of its newest ``MAX_CAMPAIGN_PUBLISHES`` publishes (``ix_publishes_app_campaign``);
older ones are left out and the answer says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.receipts import RECEIPT_EVENTS
from pushgate.domain.status import COUNTERS, DeliveryStatus
from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.schema import deliveries, devices, publish_samples, publish_stats, publishes

#: The delivery statuses whose ``(error_class, error_code)`` are failure reasons.
FAILED_STATUSES: tuple[str, ...] = (
    DeliveryStatus.FAILED.value,
    DeliveryStatus.INVALID_TOKEN.value,
    DeliveryStatus.EXPIRED.value,
)
#: The counters those statuses move: a publish with none of them has no reasons to read.
FAILED_COUNTERS: tuple[str, ...] = ("failed", "invalid_token", "expired")
#: Reasons listed per publish (or campaign) at most, the most frequent first.
MAX_REASONS = 50
#: Failed records read at most for one publish's (or one campaign's) reasons.
MAX_REASON_ROWS = 10_000
#: A campaign's stats cover at most its newest this many publishes.
MAX_CAMPAIGN_PUBLISHES = 10_000
#: The key of a sample for devices without a locale (raw tokens and topics included).
DEFAULT_LOCALE = "default"

#: ``(error_class, error_code, count)``
Reason = tuple[str | None, str | None, int]

#: What a publish's ``counts`` show: the delivery counters, then the receipts its deliveries
#: reported (``delivered``, ``opened``, ``dismissed``, ``clicked``: docs/receipts.md), all
#: columns of ``publish_stats``.
COUNTED: tuple[str, ...] = (*COUNTERS, *RECEIPT_EVENTS)


def _reasons_query(publish_ids: sa.ColumnElement[bool], max_rows: int) -> sa.Select[Any]:
    """Reasons grouped over at most ``max_rows`` failed records (the ``LIMIT`` is inside)."""
    some = (
        sa.select(deliveries.c.error_class, deliveries.c.error_code)
        .where(publish_ids, deliveries.c.status.in_(FAILED_STATUSES))
        .limit(max_rows)
        .subquery()
    )
    return sa.select(some.c.error_class, some.c.error_code, sa.func.count().label("n")).group_by(
        some.c.error_class, some.c.error_code
    )


def _sorted(rows: Sequence[Reason]) -> list[Reason]:
    """Most frequent first, then by class and code (a stable order for clients and tests)."""
    return sorted(rows, key=lambda r: (-r[2], r[0] or "", r[1] or ""))[:MAX_REASONS]


async def failure_reasons(
    conn: AsyncConnection, publish_id: str, failed: int, *, max_rows: int = MAX_REASON_ROWS
) -> tuple[list[Reason], bool]:
    """One publish's failure reasons and whether they are truncated. ``failed``: its counters'
    ``failed + invalid_token + expired`` (0: nothing is read; more than ``max_rows``: only the
    first ``max_rows`` records are, and the answer says so)."""
    if failed <= 0:
        return [], False
    q = _reasons_query(deliveries.c.publish_id == publish_id, max_rows)
    rows = [(cls, code, int(n)) for cls, code, n in (await conn.execute(q)).all()]
    return _sorted(rows), failed > max_rows


async def samples_of(conn: AsyncConnection, publish_id: str) -> dict[str, dict[str, Any]]:
    """A dry run's samples: provider → locale → the provider request."""
    q = sa.select(publish_samples).where(publish_samples.c.publish_id == publish_id)
    out: dict[str, dict[str, Any]] = {}
    for r in (await conn.execute(q)).all():
        out.setdefault(r.provider, {})[r.locale] = json.loads(r.payload)
    return out


async def write_samples(db: Database, publish_id: str, samples: Mapping[tuple[str, str], Any]) -> None:
    """Keep the first sample of each ``(provider, locale)`` (insert-or-ignore: a later batch,
    or a re-run of this one, leaves it as it is)."""
    if not samples:
        return
    insert = insert_ignoring_conflicts(db.dialect, publish_samples, ["publish_id", "provider", "locale"])
    rows = [
        {"publish_id": publish_id, "provider": p, "locale": loc[:35], "payload": json.dumps(body)}
        for (p, loc), body in sorted(samples.items())
    ]
    async with db.write() as conn:
        await conn.execute(insert, rows)


async def device_locales(db: Database, device_ids: Sequence[str]) -> dict[str, str | None]:
    """The locale of each device (one read per dry-run batch)."""
    if not device_ids:
        return {}
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(devices.c.id, devices.c.locale).where(devices.c.id.in_(list(device_ids)))
            )
        ).all()
    return {r.id: r.locale for r in rows}


@dataclass(slots=True)
class CampaignTotals:
    """A campaign's publishes summed (see the module docstring for the bound)."""

    campaign: str
    publishes: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    by_provider: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    #: The campaign had more than ``MAX_REASON_ROWS`` failed records: ``reasons`` counts those.
    reasons_truncated: bool = False
    #: More than ``MAX_CAMPAIGN_PUBLISHES`` publishes: only the newest were summed.
    truncated: bool = False
    first_created_at: float | None = None
    last_created_at: float | None = None


async def campaign_totals(
    db: Database,
    app_id: str,
    campaign: str,
    *,
    max_publishes: int = MAX_CAMPAIGN_PUBLISHES,
    max_reason_rows: int = MAX_REASON_ROWS,
) -> CampaignTotals:
    """Counters, statuses and failure reasons summed over the campaign's newest publishes: four
    grouped reads over one ``LIMIT``ed range of ``ix_publishes_app_campaign``, in one read
    transaction (on PostgreSQL, read committed: a campaign still sending may move between them)."""

    def newest(n: int) -> sa.Select[Any]:
        return (
            sa.select(publishes.c.id, publishes.c.status, publishes.c.created_at)
            .where(publishes.c.app_id == app_id, publishes.c.campaign == campaign)
            .order_by(publishes.c.id.desc())
            .limit(n)
        )

    out = CampaignTotals(campaign)
    chosen = newest(max_publishes).subquery()
    pids = sa.select(chosen.c.id)
    async with db.read() as conn:
        probe = newest(max_publishes + 1).subquery()
        if not (
            total := int((await conn.execute(sa.select(sa.func.count()).select_from(probe))).scalar_one())
        ):
            return out
        out.truncated = total > max_publishes
        overview = sa.select(
            chosen.c.status,
            sa.func.count(),
            sa.func.min(chosen.c.created_at),
            sa.func.max(chosen.c.created_at),
        )
        for status, n, first, last in (await conn.execute(overview.group_by(chosen.c.status))).all():
            out.by_status[status] = int(n)
            out.publishes += int(n)
            out.first_created_at = min(first, out.first_created_at or first)
            out.last_created_at = max(last, out.last_created_at or last)
        # Receipts too (``delivered``, ``opened``, …: docs/receipts.md).
        sums = [sa.func.coalesce(sa.func.sum(getattr(publish_stats.c, c)), 0) for c in COUNTED]
        q = (
            sa.select(publish_stats.c.provider, *sums)
            .where(publish_stats.c.publish_id.in_(pids))
            .group_by(publish_stats.c.provider)
        )
        for provider, *values in (await conn.execute(q)).all():
            per = {c: int(v) for c, v in zip(COUNTED, values, strict=True)}
            out.by_provider[provider] = per
            for c, v in per.items():
                out.counts[c] += v
        if failed := sum(out.counts[c] for c in FAILED_COUNTERS):
            q = _reasons_query(deliveries.c.publish_id.in_(pids), max_reason_rows)
            out.reasons = _sorted([(cls, code, int(n)) for cls, code, n in (await conn.execute(q)).all()])
            out.reasons_truncated = failed > max_reason_rows
    return out
