"""Deleting finished publishes whose retention ran out, one bounded batch per transaction.

Why bounded: on SQLite every statement runs on the event loop's thread (docs/architecture.md,
"SQLite and PostgreSQL"), so one DELETE of a month of records would hold the API and the workers
for its whole length. A batch deletes at most ``limit`` delivery records and ``limit`` publishes,
and the caller (``engine/retention.py``) yields to the loop between batches.

Why this order: a publish's delivery records go first, ``limit`` at a time; the publish row,
its counters and any job left of it go only once none of its records is left. A publish with a
million records therefore takes many batches, and meanwhile it is still found (with fewer
records); nothing is ever left behind without its publish row to find it by.

Only closed publishes (``domain/status.py``: ``CLOSED``) whose ``completed_at`` is before the
cutoff qualify, re-checked inside the deleting transaction: a dead-letter replay reopens a
publish (status ``dispatching``, ``completed_at`` cleared), so it is not deleted while it runs,
and when it closes again its clock starts over. On PostgreSQL the publishes are taken ``FOR
UPDATE SKIP LOCKED``: two processes sweeping at once take disjoint publishes, and a replay or a
late batch holding a publish row (they lock it first, as every publish transaction does) is
skipped until the next sweep; one that comes after the delete finds no publish and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.sql.dml import ReturningDelete

from pushgate.domain.status import CLOSED
from pushgate.store.db import Database
from pushgate.store.dialect import lock_skip_locked
from pushgate.store.schema import (
    apps,
    deliveries,
    jobs,
    publish_samples,
    publish_stats,
    publishes,
    realtime_acks,
)


@dataclass(slots=True)
class Deleted:
    """Rows one batch (or a whole sweep, summed) deleted, by kind (the metric's label)."""

    publish: int = 0
    delivery: int = 0
    #: Delivery records that were dead letters (not counted in ``delivery``).
    dead_letter: int = 0
    publish_stats: int = 0
    job: int = 0
    #: Publishes the batch found expired (0: nothing is left to delete for this cutoff).
    found: int = 0

    def __iadd__(self, other: Deleted) -> Deleted:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def rows(self) -> dict[str, int]:
        """Rows deleted per kind (``found`` is not a deletion)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "found"}


@lru_cache(maxsize=2)
def _expired(dialect: str) -> sa.Select:
    """The oldest closed publishes of an app that closed before the cutoff, locked for deleting
    (``ix_publishes_retention`` on ``(app_id, completed_at)`` makes it a range scan)."""
    q = (
        sa.select(publishes.c.id)
        .where(
            publishes.c.app_id == sa.bindparam("app"),
            publishes.c.completed_at < sa.bindparam("cutoff"),
            publishes.c.status.in_([s.value for s in CLOSED]),
        )
        .order_by(publishes.c.completed_at)
        .limit(sa.bindparam("lim"))
    )
    return lock_skip_locked(dialect, q)


def _delete_records(ids: list[str], limit: int) -> ReturningDelete[tuple[bool]]:
    some = (
        sa.select(deliveries.c.publish_id, deliveries.c.recipient_id)
        .where(deliveries.c.publish_id.in_(ids))
        .limit(limit)
    )
    return (
        sa.delete(deliveries)
        .where(sa.tuple_(deliveries.c.publish_id, deliveries.c.recipient_id).in_(some))
        .returning(deliveries.c.dead)
    )


def _delete_publishes(ids: list[str]) -> ReturningDelete[tuple[str]]:
    """The publishes among ``ids`` that have no delivery record left."""
    left = sa.exists().where(deliveries.c.publish_id == publishes.c.id)
    return sa.delete(publishes).where(publishes.c.id.in_(ids), ~left).returning(publishes.c.id)


class RetentionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def apps(self) -> list[tuple[str, str]]:
        """Every app's ``(id, name)``: the retention period is chosen per app."""
        async with self.db.read() as conn:
            return [(r.id, r.name) for r in (await conn.execute(sa.select(apps.c.id, apps.c.name))).all()]

    async def delete_batch(self, app_id: str, cutoff: float, limit: int) -> Deleted:
        """Delete, in one transaction, up to ``limit`` delivery records of the app's publishes
        that closed before ``cutoff`` (the oldest ``limit`` of them), then those of these
        publishes that have no record left, with their counters and jobs."""
        out = Deleted()
        async with self.db.write() as conn:
            params = {"app": app_id, "cutoff": cutoff, "lim": limit}
            ids = list((await conn.execute(_expired(self.db.dialect), params)).scalars())
            out.found = len(ids)
            if not ids:
                return out
            dead = list((await conn.execute(_delete_records(ids, limit))).scalars())
            out.dead_letter = sum(1 for d in dead if d)
            out.delivery = len(dead) - out.dead_letter
            gone = list((await conn.execute(_delete_publishes(ids))).scalars())
            out.publish = len(gone)
            if gone:
                stats = await conn.execute(
                    sa.delete(publish_stats).where(publish_stats.c.publish_id.in_(gone))
                )
                left = await conn.execute(sa.delete(jobs).where(jobs.c.publish_id.in_(gone)))
                # A dry run's samples go with it (docs/campaigns.md).
                await conn.execute(sa.delete(publish_samples).where(publish_samples.c.publish_id.in_(gone)))
                # So do its realtime acks (docs/realtime.md).
                await conn.execute(sa.delete(realtime_acks).where(realtime_acks.c.publish_id.in_(gone)))
                out.publish_stats, out.job = stats.rowcount, left.rowcount
        return out
