"""Provider health rows: the quarantine state (per pair, and per push-service origin for the
providers whose endpoint each device names) and the rolling window of answers per class.

A method whose first parameter is ``conn`` runs in the caller's transaction; one without opens
its own (``breaker`` and ``breaker_in`` are the same read, either way).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from pushgate.domain.quarantine import HALF_OPEN, OPEN, Breaker
from pushgate.store.db import Database
from pushgate.store.dialect import upsert_adding, upsert_replacing
from pushgate.store.schema import jobs, origin_health, provider_events, provider_health

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


_ORIGIN_FIELDS = (*_FIELDS, "failed_recipient")


def _breaker(row: sa.Row, fields: tuple[str, ...] = _FIELDS) -> Breaker:
    return Breaker(**{f: getattr(row, f) for f in fields})


@lru_cache(maxsize=4)
def _events_upsert(dialect: str) -> Insert:
    """``count = count + excluded.count`` on the minute's row, built once: it runs in every
    outcome transaction, and building a multi-row statement per call cost more than running it."""
    return upsert_adding(
        dialect, provider_events, ("app_id", "provider", "minute", "error_class"), ("count",)
    )


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
        """Close the pair's breakers (its own and its origins') and wake the work they deferred
        (the credential was replaced: a refused VAPID key is refused by every origin)."""
        now = time.time()
        for table in (provider_health, origin_health):
            await conn.execute(sa.delete(table).where(table.c.app_id == app_id, table.c.provider == provider))
        await wake_deferred(conn, app_id, provider, now)

    # -- per push-service origin (Web Push, WNS) -------------------------------------------------

    async def origin_breakers(
        self, app_id: str, provider: str | None = None
    ) -> dict[tuple[str, str], Breaker]:
        """``(provider, origin) → breaker`` of the app's origins that are not clean (only those
        have rows), for one provider or all."""
        q = sa.select(origin_health).where(origin_health.c.app_id == app_id)
        if provider is not None:
            q = q.where(origin_health.c.provider == provider)
        async with self.db.read() as conn:
            rows = (await conn.execute(q.order_by(origin_health.c.provider, origin_health.c.origin))).all()
        return {(r.provider, r.origin): _breaker(r, _ORIGIN_FIELDS) for r in rows}

    async def origin_breakers_in(
        self, conn: AsyncConnection, app_id: str, provider: str, origins: Sequence[str]
    ) -> dict[str, Breaker]:
        """The rows of ``origins`` (clean ones are absent), inside the caller's transaction."""
        rows = (
            await conn.execute(
                sa.select(origin_health).where(
                    origin_health.c.app_id == app_id,
                    origin_health.c.provider == provider,
                    origin_health.c.origin.in_(sorted(origins)),
                )
            )
        ).all()
        return {r.origin: _breaker(r, _ORIGIN_FIELDS) for r in rows}

    async def save_origin(
        self, conn: AsyncConnection, app_id: str, provider: str, origin: str, b: Breaker
    ) -> None:
        """Write an origin's breaker; a clean one is deleted, so rows stay few however many
        origins the app's devices name."""
        key: dict[str, object] = {"app_id": app_id, "provider": provider, "origin": origin}
        if b == Breaker():
            await conn.execute(
                sa.delete(origin_health).where(*(origin_health.c[k] == v for k, v in key.items()))
            )
            return
        values = {f: getattr(b, f) for f in _ORIGIN_FIELDS}
        values["updated_at"] = time.time()
        await conn.execute(upsert_replacing(self.db.dialect, origin_health, key, values))

    async def take_origin_probe(
        self, app_id: str, provider: str, origin: str, now: float, probe_timeout: float
    ) -> bool:
        """Become the one half-open probe of a due origin; False when another sender won."""
        t = origin_health
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.update(t)
                .where(
                    t.c.app_id == app_id,
                    t.c.provider == provider,
                    t.c.origin == origin,
                    sa.or_(
                        sa.and_(t.c.state == OPEN, t.c.open_until <= now),
                        sa.and_(t.c.state == HALF_OPEN, t.c.probe_until <= now),
                    ),
                )
                .values(state=HALF_OPEN, probe_until=now + probe_timeout, updated_at=now)
            )
        return bool(res.rowcount)

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
            await conn.execute(_events_upsert(self.db.dialect), rows)

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


async def reschedule_deferred(conn: AsyncConnection, app_id: str, provider: str, at: float) -> None:
    """Bring the pair's quarantine-deferred jobs that wait past ``at`` forward to ``at`` (they
    stay deferred: a closing breaker still wakes them at once)."""
    await conn.execute(
        sa.update(jobs)
        .where(jobs.c.app_id == app_id, jobs.c.deferred_by == provider, jobs.c.run_at > at)
        .values(run_at=at)
    )
