"""Provider health rows: the quarantine state and the rolling window of answers per class.

A method whose first parameter is ``conn`` runs in the caller's transaction; one without opens
its own (``breaker`` and ``breaker_in`` are the same read, either way).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.quarantine import HALF_OPEN, OPEN, Breaker
from pushgate.store.db import Database
from pushgate.store.dialect import upsert_adding_many, upsert_replacing
from pushgate.store.schema import jobs, provider_events, provider_health

_FIELDS = (
    "state",
    "failures",
    "cooldown",
    "open_until",
    "probe_until",
    "opened_at",
    "reason_class",
    "reason_code",
    "reason_message",
)


def _breaker(row: sa.Row) -> Breaker:
    return Breaker(**{f: getattr(row, f) for f in _FIELDS})


class ProviderHealthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def breaker(self, app_id: str, provider: str) -> Breaker:
        """The pair's breaker, read on its own."""
        async with self.db.read() as conn:
            return await self.breaker_in(conn, app_id, provider)

    async def breaker_in(self, conn: AsyncConnection, app_id: str, provider: str) -> Breaker:
        """The pair's breaker, read inside the caller's (write) transaction."""
        q = sa.select(provider_health).where(
            provider_health.c.app_id == app_id, provider_health.c.provider == provider
        )
        row = (await conn.execute(q)).first()
        return _breaker(row) if row is not None else Breaker()

    async def breakers(self, app_id: str) -> dict[str, Breaker]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(sa.select(provider_health).where(provider_health.c.app_id == app_id))
            ).all()
        return {r.provider: _breaker(r) for r in rows}

    async def save(self, conn: AsyncConnection, app_id: str, provider: str, b: Breaker) -> None:
        values = {f: getattr(b, f) for f in _FIELDS}
        values["updated_at"] = time.time()
        await conn.execute(
            upsert_replacing(
                self.db.dialect, provider_health, {"app_id": app_id, "provider": provider}, values
            )
        )

    async def take_probe(self, app_id: str, provider: str, now: float, probe_timeout: float) -> bool:
        """Become the one half-open probe of a due breaker; False when another sender won."""
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.update(provider_health)
                .where(
                    provider_health.c.app_id == app_id,
                    provider_health.c.provider == provider,
                    sa.or_(
                        sa.and_(provider_health.c.state == OPEN, provider_health.c.open_until <= now),
                        sa.and_(provider_health.c.state == HALF_OPEN, provider_health.c.probe_until <= now),
                    ),
                )
                .values(state=HALF_OPEN, probe_until=now + probe_timeout, updated_at=now)
            )
        return bool(res.rowcount)

    async def reset(self, conn: AsyncConnection, app_id: str, provider: str) -> None:
        """Close the pair's breaker and wake the work it deferred (its credential was replaced)."""
        now = time.time()
        await conn.execute(
            sa.delete(provider_health).where(
                provider_health.c.app_id == app_id, provider_health.c.provider == provider
            )
        )
        await wake_deferred(conn, app_id, provider, now)

    async def add_events(
        self, conn: AsyncConnection, app_id: str, provider: str, now: float, counts: Mapping[str, int]
    ) -> None:
        """Count answers by class into the current minute's bucket."""
        minute = int(now // 60)
        rows = [
            {"app_id": app_id, "provider": provider, "minute": minute, "error_class": cls, "count": n}
            for cls, n in sorted(counts.items())
            if n
        ]  # sorted: concurrent upserts lock the rows in one order (no deadlock on PostgreSQL)
        if rows:
            await conn.execute(
                upsert_adding_many(
                    self.db.dialect,
                    provider_events,
                    rows,
                    ("app_id", "provider", "minute", "error_class"),
                    ("count",),
                )
            )

    async def window(self, app_id: str, since: float) -> dict[str, dict[str, int]]:
        """Answers per provider and class since ``since`` (whole minutes)."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        provider_events.c.provider,
                        provider_events.c.error_class,
                        sa.func.sum(provider_events.c.count),
                    )
                    .where(
                        provider_events.c.app_id == app_id,
                        provider_events.c.minute >= int(since // 60),
                    )
                    .group_by(provider_events.c.provider, provider_events.c.error_class)
                )
            ).all()
        out: dict[str, dict[str, int]] = {}
        for provider, cls, n in rows:
            out.setdefault(provider, {})[cls] = int(n or 0)
        return out

    async def prune_events(self, before: float) -> int:
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.delete(provider_events).where(provider_events.c.minute < int(before // 60))
            )
        return int(res.rowcount or 0)


async def wake_deferred(conn: AsyncConnection, app_id: str, provider: str, now: float) -> None:
    """Make the pair's quarantine-deferred jobs runnable now."""
    await conn.execute(
        sa.update(jobs)
        .where(jobs.c.app_id == app_id, jobs.c.deferred_by == provider, jobs.c.run_at > now)
        .values(run_at=now, deferred_by=None)
    )
