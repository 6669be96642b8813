"""Delivery records and the publish's counters: what planning inserts and dispatch records.

These are the hot path (one call of each per chunk), so the statements are prepared text SQL
built once per dialect: see :data:`RECORDED` and :func:`bump`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.domain.accounting import DeliveryUpdate
from pushgate.domain.status import COUNTERS, FINAL, DeliveryStatus
from pushgate.store.dialect import insert_ignoring_conflicts, placeholders
from pushgate.store.publishes.model import Repository
from pushgate.store.schema import deliveries

#: What an outcome writes on its delivery row: (column = ``DeliveryUpdate`` attribute, PostgreSQL
#: type, SQL applied to the value). A new recorded column is one more line here.
RECORDED: tuple[tuple[str, str, str], ...] = (
    ("status", "varchar", "{}"),
    ("attempts", "integer", "{}"),
    ("error_code", "varchar", "{}"),
    ("error_message", "text", "substr({}, 1, 1000)"),
    ("error_class", "varchar", "{}"),
    ("provider_message_id", "varchar", "{}"),
    ("sent_at", "float8", "{}"),
    ("dead", "boolean", "{}"),
)
_recorded_values = attrgetter(*(name for name, _, _ in RECORDED))


@lru_cache(maxsize=4)
def _record_sql(dialect: str) -> str:
    if dialect == "postgresql":
        # $1 updated_at, $2 publish ids, $3 recipient ids, then one array per recorded column.
        arrays = ", ".join(
            [
                "$2::varchar[]",
                "$3::varchar[]",
                *(f"${n}::{typ}[]" for n, (_, typ, _) in enumerate(RECORDED, 4)),
            ]
        )
        names = ", ".join(name for name, _, _ in RECORDED)
        sets = ", ".join(f"{name} = {expr.format('v.' + name)}" for name, _, expr in RECORDED)
        return (
            f"UPDATE deliveries SET {sets}, updated_at = $1 "
            f"FROM unnest({arrays}) AS v(publish_id, recipient_id, {names}) "
            "WHERE deliveries.publish_id = v.publish_id AND deliveries.recipient_id = v.recipient_id"
        )
    sets = ", ".join(f"{name} = {expr.format('?')}" for name, _, expr in RECORDED)
    return f"UPDATE deliveries SET {sets}, updated_at = ? WHERE publish_id = ? AND recipient_id = ?"


@lru_cache(maxsize=256)
def _bump_sql(dialect: str, names: tuple[str, ...]) -> str:
    for name in names:
        if name not in COUNTERS:
            raise ValueError(f"not a publish counter: {name!r}")
    marks = ", ".join(placeholders(dialect, 2 + len(names)))
    adds = ", ".join(f"{n} = publish_stats.{n} + excluded.{n}" for n in names)
    return (
        f"INSERT INTO publish_stats (publish_id, provider, {', '.join(names)}) VALUES ({marks}) "
        f"ON CONFLICT (publish_id, provider) DO UPDATE SET {adds}"
    )


async def bump(conn: AsyncConnection, dialect: str, publish_id: str, provider: str, **deltas: int) -> None:
    """Move counters with ``x = x + n`` (never read-modify-write): one upsert."""
    names = tuple(k for k, v in deltas.items() if v)
    if not names:
        return
    await conn.exec_driver_sql(_bump_sql(dialect, names), (publish_id, provider, *(deltas[k] for k in names)))


async def bump_many(
    conn: AsyncConnection, dialect: str, moves: Sequence[tuple[str, str, dict[str, int]]]
) -> None:
    """:func:`bump` for many ``(publish_id, provider, deltas)``: one executemany per set of
    counters moved."""
    by_names: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for publish_id, provider, deltas in moves:
        names = tuple(k for k, v in deltas.items() if v)
        if names:
            by_names.setdefault(names, []).append((publish_id, provider, *(deltas[k] for k in names)))
    for names, params in by_names.items():
        await conn.exec_driver_sql(_bump_sql(dialect, names), params)


class Outcomes(Repository):
    async def insert_planned(
        self, conn: AsyncConnection, publish_id: str, rows: Sequence[dict[str, Any]]
    ) -> set[str]:
        """Insert pending delivery records; returns the recipient ids that were new.

        The (publish, recipient) key is the fan-out's dedupe: a device reached through a
        channel and a user and its id gets one record, hence one notification. What counts as
        new is what the ``INSERT … ON CONFLICT DO NOTHING`` itself returned, not an earlier
        read: two claims planning the same page at once (a lapsed lease on PostgreSQL) cannot
        both count a recipient.
        """
        return (await self.insert_planned_many(conn, {publish_id: rows})).get(publish_id, set())

    async def insert_planned_many(
        self, conn: AsyncConnection, rows_by_publish: Mapping[str, Sequence[dict[str, Any]]]
    ) -> dict[str, set[str]]:
        """:meth:`insert_planned` for several publishes in one statement (admission plans a
        group's small publishes at once); returns the new recipient ids by publish."""
        now = clock.now()
        params = []
        for publish_id, rows in rows_by_publish.items():
            # Two references to one device inside one page collapse here.
            unique: dict[str, dict[str, Any]] = {}
            for r in rows:
                unique.setdefault(r["recipient_id"], r)
            params += [
                {
                    "publish_id": publish_id,
                    "recipient_id": r["recipient_id"],
                    "device_id": r.get("device_id"),
                    "provider": r["provider"],
                    "status": r.get("status", DeliveryStatus.PENDING.value),
                    "error_code": r.get("error_code"),
                    "error_message": r.get("error_message"),
                    "release_at": r.get("release_at"),
                    "attempts": 0,
                    "updated_at": now,
                }
                for r in unique.values()
            ]
        if not params:
            return {}
        stmt = insert_ignoring_conflicts(self.db.dialect, deliveries, ("publish_id", "recipient_id"))
        result = await conn.execute(
            stmt.returning(deliveries.c.publish_id, deliveries.c.recipient_id), params
        )
        fresh: dict[str, set[str]] = {}
        for row in result.all():
            fresh.setdefault(row.publish_id, set()).add(row.recipient_id)
        return fresh

    async def bump(self, conn: AsyncConnection, publish_id: str, provider: str, **deltas: int) -> None:
        """Move counters with ``x = x + n`` (never read-modify-write): one upsert."""
        await bump(conn, self.db.dialect, publish_id, provider, **deltas)

    async def record(self, conn: AsyncConnection, publish_id: str, updates: Sequence[DeliveryUpdate]) -> None:
        """Write outcomes onto their delivery rows: one statement for the whole chunk."""
        await self.record_many(conn, {publish_id: updates})

    async def record_many(
        self, conn: AsyncConnection, updates_by_publish: Mapping[str, Sequence[DeliveryUpdate]]
    ) -> None:
        """Write the outcomes of one or many publishes onto their delivery rows in one statement.

        SQLite: one prepared UPDATE run over every row (``executemany`` inside sqlite3, no
        per-row work in SQLAlchemy). PostgreSQL: one ``UPDATE … FROM unnest(arrays)``.
        The columns written are :data:`RECORDED`.
        """
        rows = [(pid, u) for pid, updates in updates_by_publish.items() for u in updates]
        if not rows:
            return
        now = clock.now()
        sql = _record_sql(self.db.dialect)
        if self.db.dialect == "postgresql":
            columns = list(zip(*(_recorded_values(u) for _, u in rows), strict=True))
            pids = [pid for pid, _ in rows]
            rids = [u.recipient_id for _, u in rows]
            await conn.exec_driver_sql(sql, (now, pids, rids, *columns))
        else:
            await conn.exec_driver_sql(
                sql, [(*_recorded_values(u), now, pid, u.recipient_id) for pid, u in rows]
            )

    async def final_recipients(self, publish_id: str, recipient_ids: Sequence[str]) -> set[str]:
        """Recipients that already have a final outcome (a re-run batch skips them)."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(deliveries.c.recipient_id).where(
                        deliveries.c.publish_id == publish_id,
                        deliveries.c.recipient_id.in_(list(recipient_ids)),
                        deliveries.c.status.in_([s.value for s in FINAL]),
                    )
                )
            ).all()
        return {r.recipient_id for r in rows}
