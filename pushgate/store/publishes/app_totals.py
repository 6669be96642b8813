"""An app's delivery counters summed per provider, and its publishes counted per status.

For statistics routes that speak of an app as a whole (gorush's ``GET /api/stat/app``): the
counters are the publishes' own (``publish_stats``, moved by planning and dispatch), so the sums
agree with ``GET /v1/publishes/{id}`` and need no per-delivery scan. They cover the publishes
retention still keeps (``[retention]``), which is the app's recent history, not all time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from pushgate.domain.status import COUNTERS
from pushgate.store.db import Database
from pushgate.store.schema import publish_stats, publishes


@dataclass
class AppTotals:
    #: provider → counter (``sent``, ``failed``, ``invalid_token``…) → sum.
    by_provider: dict[str, dict[str, int]] = field(default_factory=dict)
    #: publish status → how many of the app's publishes have it.
    by_status: dict[str, int] = field(default_factory=dict)


async def app_totals(db: Database, app_id: str) -> AppTotals:
    """Two grouped reads in one read transaction, over the ``app_id`` indexes of ``publishes``."""
    out = AppTotals()
    own = sa.select(publishes.c.id).where(publishes.c.app_id == app_id)
    sums = [sa.func.coalesce(sa.func.sum(getattr(publish_stats.c, c)), 0) for c in COUNTERS]
    per_provider = (
        sa.select(publish_stats.c.provider, *sums)
        .where(publish_stats.c.publish_id.in_(own))
        .group_by(publish_stats.c.provider)
    )
    per_status = (
        sa.select(publishes.c.status, sa.func.count())
        .where(publishes.c.app_id == app_id)
        .group_by(publishes.c.status)
    )
    async with db.read() as conn:
        for row in (await conn.execute(per_provider)).all():
            out.by_provider[row[0]] = {c: int(v) for c, v in zip(COUNTERS, row[1:], strict=True)}
        for status, n in (await conn.execute(per_status)).all():
            out.by_status[str(status)] = int(n)
    return out
