"""Publishes, their per-provider counters and their delivery records."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.ids import new_id
from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts, lock_rows, placeholders
from pushgate.store.queue import JobQueue
from pushgate.store.schema import deliveries, devices, jobs, publish_stats, publishes

COUNTERS = ("planned", "sent", "failed", "invalid_token", "retrying", "expired", "cancelled")
FINAL = ("sent", "failed", "invalid_token", "expired", "cancelled")
#: Publish statuses after which nothing more is sent.
CLOSED = ("completed", "failed", "expired", "cancelled")


@dataclass(slots=True)
class Publish:
    id: str
    app_id: str
    status: str
    request: dict[str, Any]
    idempotency_key: str | None
    expire_at: float | None
    planning_done: bool
    error_code: str | None
    error_message: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    counts: dict[str, int] = field(default_factory=dict)
    by_provider: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(slots=True)
class DeliveryUpdate:
    recipient_id: str
    status: str
    attempts: int
    error_code: str | None = None
    error_message: str | None = None
    #: The class of the provider's answer (domain/outcomes.py); None when none was received.
    error_class: str | None = None
    provider_message_id: str | None = None
    sent_at: float | None = None
    #: Failed after exhausting its attempts on retryable errors (a dead letter).
    dead: bool = False


@dataclass(slots=True)
class DeadLetter:
    publish_id: str
    recipient_id: str
    device_id: str | None
    provider: str
    attempts: int
    error_code: str | None
    error_message: str | None
    updated_at: float
    error_class: str | None = None


def _publish(row: Any) -> Publish:
    return Publish(
        id=row.id,
        app_id=row.app_id,
        status=row.status,
        request=json.loads(row.request),
        idempotency_key=row.idempotency_key,
        expire_at=row.expire_at,
        planning_done=bool(row.planning_done),
        error_code=row.error_code,
        error_message=row.error_message,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
    )


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
        # $1 updated_at, $2 publish_id, $3 recipient ids, then one array per recorded column.
        arrays = ", ".join(
            ["$3::varchar[]", *(f"${n}::{typ}[]" for n, (_, typ, _) in enumerate(RECORDED, 4))]
        )
        names = ", ".join(name for name, _, _ in RECORDED)
        sets = ", ".join(f"{name} = {expr.format('v.' + name)}" for name, _, expr in RECORDED)
        return (
            f"UPDATE deliveries SET {sets}, updated_at = $1 "
            f"FROM unnest({arrays}) AS v(recipient_id, {names}) "
            "WHERE deliveries.publish_id = $2 AND deliveries.recipient_id = v.recipient_id"
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


_BY_ID = sa.select(publishes).where(publishes.c.id == sa.bindparam("pid"))
_BY_ID_IN_APP = _BY_ID.where(publishes.c.app_id == sa.bindparam("app"))
_STATUS = sa.select(publishes.c.status).where(publishes.c.id == sa.bindparam("pid"))
_STATS_OF = sa.select(publish_stats).where(publish_stats.c.publish_id == sa.bindparam("pid"))
_START = (
    sa.update(publishes)
    .where(publishes.c.id == sa.bindparam("pid"), publishes.c.status == "accepted")
    .values(status="dispatching", started_at=sa.bindparam("now"))
)
_FAIL = (
    sa.update(publishes)
    .where(publishes.c.id == sa.bindparam("pid"), publishes.c.status.in_(("accepted", "dispatching")))
    .values(
        status="failed",
        error_code=sa.bindparam("code"),
        error_message=sa.bindparam("msg"),
        completed_at=sa.bindparam("now"),
    )
)
_CLOSE = (
    sa.update(publishes)
    .where(publishes.c.id == sa.bindparam("pid"), publishes.c.status == "dispatching")
    .values(status=sa.bindparam("st"), completed_at=sa.bindparam("now"))
)
_SET_PLANNING_DONE = (
    sa.update(publishes).where(publishes.c.id == sa.bindparam("pid")).values(planning_done=True)
)
_TOTALS = sa.select(
    sa.func.coalesce(sa.func.sum(publish_stats.c.planned), 0),
    sa.func.coalesce(
        sa.func.sum(
            publish_stats.c.sent
            + publish_stats.c.failed
            + publish_stats.c.invalid_token
            + publish_stats.c.expired
        ),
        0,
    ),
    sa.func.coalesce(sa.func.sum(publish_stats.c.expired), 0),
).where(publish_stats.c.publish_id == sa.bindparam("pid"))


@lru_cache(maxsize=4)
def _closable_publish(dialect: str, lock: bool) -> sa.Select:
    q = sa.select(publishes.c.status, publishes.c.planning_done).where(publishes.c.id == sa.bindparam("pid"))
    return lock_rows(dialect, q) if lock else q


@lru_cache(maxsize=4)
def _status_locked(dialect: str, exclusive: bool) -> sa.Select:
    q = sa.select(publishes.c.status).where(publishes.c.id == sa.bindparam("pid"))
    return lock_rows(dialect, q, shared=not exclusive)


_INSERT_PUBLISH = sa.insert(publishes)
_RELEASE_KEY = (
    sa.update(publishes).where(publishes.c.id == sa.bindparam("old_id")).values(idempotency_key=None)
)


class _GroupCommit:
    """Admission's group commit: publishes admitted concurrently are written in one transaction.

    A request appends its publish and waits; one flusher task writes everything queued so far
    (publish rows, their ``plan`` jobs, released idempotency keys) in a single transaction and
    then answers every waiter. Whatever arrives while a flush runs goes into the next one. So
    under load one commit serves many requests, and an idle server commits at once. A request is
    answered only after its own rows committed: nothing acknowledged can be lost.

    If a group fails on a constraint (two requests racing for one idempotency key), each member is
    retried in a transaction of its own, so only the loser sees the ``IntegrityError``.
    """

    #: Publishes per transaction at most (bounds the statement size and the commit's latency).
    MAX_GROUP = 256

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[tuple[Publish, str | None, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, pub: Publish, release_key_of: str | None) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((pub, release_key_of, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="pushgate-admission-commit")
        await asyncio.shield(fut)

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self.MAX_GROUP], self._queue[self.MAX_GROUP :]
            try:
                await self._write(group)
            except IntegrityError:
                for item in group:
                    try:
                        await self._write([item])
                    except Exception as exc:  # handed to the waiting request
                        _fail(item[2], exc)
                    else:
                        _done(item[2])
            except Exception as exc:  # handed to every waiting request
                for item in group:
                    _fail(item[2], exc)
            except BaseException:  # cancelled (shutdown): nobody may wait forever
                for item in group + self._queue:
                    _fail(item[2], RuntimeError("admission stopped before its commit"))
                self._queue = []
                raise
            else:
                for item in group:
                    _done(item[2])

    async def _write(self, group: list[tuple[Publish, str | None, asyncio.Future[None]]]) -> None:
        async with self.db.write() as conn:
            released = [{"old_id": old} for _, old, _ in group if old is not None]
            if released:
                await conn.execute(_RELEASE_KEY, released)
            await conn.execute(
                _INSERT_PUBLISH,
                [
                    {
                        "id": p.id,
                        "app_id": p.app_id,
                        "status": p.status,
                        "idempotency_key": p.idempotency_key,
                        "request": json.dumps(p.request, separators=(",", ":")),
                        "expire_at": p.expire_at,
                        "planning_done": False,
                        "created_at": p.created_at,
                    }
                    for p, _, _ in group
                ],
            )
            await JobQueue.enqueue_many(
                conn,
                [
                    {"kind": "plan", "app_id": p.app_id, "publish_id": p.id, "payload": _PLAN_START}
                    for p, _, _ in group
                ],
            )


_PLAN_START: dict[str, Any] = {"i": 0, "cursor": None}


def _done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _fail(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class PublishStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._admissions = _GroupCommit(db)

    async def admit(
        self,
        app_id: str,
        request: dict[str, Any],
        *,
        idempotency_key: str | None,
        expire_at: float | None,
        window_seconds: float,
    ) -> tuple[Publish, bool]:
        """Write the publish and its plan job in one transaction.

        Returns ``(publish, created)``; with a known idempotency key inside the window the
        first publish comes back and nothing new is written. Concurrent admissions share one
        transaction (:class:`_GroupCommit`); each returns only after that commit.
        """
        for _ in range(3):
            existing = await self._by_key(app_id, idempotency_key) if idempotency_key else None
            now = time.time()
            if existing is not None and existing.created_at >= now - window_seconds:
                return existing, False
            pub = Publish(
                id=new_id("pub"),
                app_id=app_id,
                status="accepted",
                request=request,
                idempotency_key=idempotency_key,
                expire_at=expire_at,
                planning_done=False,
                error_code=None,
                error_message=None,
                created_at=now,
                started_at=None,
                completed_at=None,
                counts=dict.fromkeys(COUNTERS, 0),
            )
            try:
                await self._admissions.submit(pub, existing.id if existing is not None else None)
            except IntegrityError:
                continue  # a concurrent request with the same key won: return its publish
            return pub, True
        raise RuntimeError("idempotency key contention")

    async def _by_key(self, app_id: str, key: str) -> Publish | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(publishes).where(
                        publishes.c.app_id == app_id, publishes.c.idempotency_key == key
                    )
                )
            ).first()
        return _publish(row) if row else None

    async def get(self, app_id: str | None, publish_id: str, *, with_counts: bool = True) -> Publish | None:
        if app_id is None:
            q, params = _BY_ID, {"pid": publish_id}
        else:
            q, params = _BY_ID_IN_APP, {"pid": publish_id, "app": app_id}
        async with self.db.read() as conn:
            row = (await conn.execute(q, params)).first()
            if row is None:
                return None
            pub = _publish(row)
            if with_counts:
                await self._attach_counts(conn, [pub])
        return pub

    async def status(self, publish_id: str) -> str | None:
        async with self.db.read() as conn:
            return (await conn.execute(_STATUS, {"pid": publish_id})).scalar()

    async def list_publishes(
        self, app_id: str, *, cursor: str | None, limit: int
    ) -> tuple[list[Publish], str | None]:
        cond = [publishes.c.app_id == app_id]
        if cursor:
            cond.append(publishes.c.id < cursor)
        q = sa.select(publishes).where(*cond).order_by(publishes.c.id.desc()).limit(limit + 1)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
            pubs = [_publish(r) for r in rows[:limit]]
            await self._attach_counts(conn, pubs)
        return pubs, (pubs[-1].id if len(rows) > limit else None)

    async def _attach_counts(self, conn: AsyncConnection, pubs: list[Publish]) -> None:
        if not pubs:
            return
        by_id = {p.id: p for p in pubs}
        for p in pubs:
            p.counts = dict.fromkeys(COUNTERS, 0)
        if len(pubs) == 1:
            rows = (await conn.execute(_STATS_OF, {"pid": pubs[0].id})).all()
        else:
            rows = (
                await conn.execute(
                    sa.select(publish_stats).where(publish_stats.c.publish_id.in_(list(by_id)))
                )
            ).all()
        for r in rows:
            p = by_id[r.publish_id]
            p.by_provider[r.provider] = {c: getattr(r, c) for c in COUNTERS}
            for c in COUNTERS:
                p.counts[c] += getattr(r, c)

    async def deliveries(
        self,
        app_id: str,
        publish_id: str,
        *,
        status: str | None,
        provider: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Any], str | None]:
        # Scoped by app here too, not only by the caller's check of the publish.
        owned = sa.exists().where(publishes.c.id == publish_id, publishes.c.app_id == app_id)
        cond = [deliveries.c.publish_id == publish_id, owned]
        if status:
            cond.append(deliveries.c.status == status)
        if provider:
            cond.append(deliveries.c.provider == provider)
        if cursor:
            cond.append(deliveries.c.recipient_id > cursor)
        q = sa.select(deliveries).where(*cond).order_by(deliveries.c.recipient_id).limit(limit + 1)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        items = list(rows[:limit])
        return items, (items[-1].recipient_id if len(rows) > limit else None)

    # ---- engine side --------------------------------------------------------------------

    async def mark_started(self, publish_id: str, conn: AsyncConnection | None = None) -> None:
        """``accepted`` → ``dispatching`` (planning began); inside ``conn``'s transaction if given."""
        if conn is not None:
            await conn.execute(_START, {"pid": publish_id, "now": time.time()})
            return
        async with self.db.write() as own:
            await own.execute(_START, {"pid": publish_id, "now": time.time()})

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
        if not rows:
            return set()
        now = time.time()
        # Two references to one device inside one page collapse here.
        unique: dict[str, dict[str, Any]] = {}
        for r in rows:
            unique.setdefault(r["recipient_id"], r)
        stmt = insert_ignoring_conflicts(self.db.dialect, deliveries, ("publish_id", "recipient_id"))
        result = await conn.execute(
            stmt.returning(deliveries.c.recipient_id),
            [
                {
                    "publish_id": publish_id,
                    "recipient_id": r["recipient_id"],
                    "device_id": r.get("device_id"),
                    "provider": r["provider"],
                    "status": r.get("status", "pending"),
                    "error_code": r.get("error_code"),
                    "error_message": r.get("error_message"),
                    "attempts": 0,
                    "updated_at": now,
                }
                for r in unique.values()
            ],
        )
        return {row.recipient_id for row in result.all()}

    async def bump(self, conn: AsyncConnection, publish_id: str, provider: str, **deltas: int) -> None:
        """Move counters with ``x = x + n`` (never read-modify-write): one upsert."""
        names = tuple(k for k, v in deltas.items() if v)
        if not names:
            return
        await conn.exec_driver_sql(
            _bump_sql(self.db.dialect, names), (publish_id, provider, *(deltas[k] for k in names))
        )

    async def record(self, conn: AsyncConnection, publish_id: str, updates: Sequence[DeliveryUpdate]) -> None:
        """Write outcomes onto their delivery rows: one statement for the whole chunk.

        SQLite: one prepared UPDATE run over every row (``executemany`` inside sqlite3, no
        per-row work in SQLAlchemy). PostgreSQL: one ``UPDATE … FROM unnest(arrays)``.
        The columns written are :data:`RECORDED`.
        """
        if not updates:
            return
        now = time.time()
        sql = _record_sql(self.db.dialect)
        if self.db.dialect == "postgresql":
            columns = list(zip(*map(_recorded_values, updates), strict=True))
            rids = [u.recipient_id for u in updates]
            await conn.exec_driver_sql(sql, (now, publish_id, rids, *columns))
        else:
            tail = (now, publish_id)
            await conn.exec_driver_sql(sql, [(*_recorded_values(u), *tail, u.recipient_id) for u in updates])

    async def final_recipients(self, publish_id: str, recipient_ids: Sequence[str]) -> set[str]:
        """Recipients that already have a final outcome (a re-run batch skips them)."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(deliveries.c.recipient_id).where(
                        deliveries.c.publish_id == publish_id,
                        deliveries.c.recipient_id.in_(list(recipient_ids)),
                        deliveries.c.status.in_(FINAL),
                    )
                )
            ).all()
        return {r.recipient_id for r in rows}

    async def set_planning_done(self, conn: AsyncConnection, publish_id: str) -> None:
        await conn.execute(_SET_PLANNING_DONE, {"pid": publish_id})

    async def fail(
        self, publish_id: str, code: str, message: str, conn: AsyncConnection | None = None
    ) -> None:
        """Fail an open publish (inside ``conn``'s transaction if given): everything not yet final
        fails with it and its jobs are dropped.

        Used when planning cannot proceed (or keeps crashing): dispatch jobs it already queued
        would otherwise be dropped unrecorded and leave their deliveries ``pending`` forever.
        """
        if conn is None:
            async with self.db.write() as own:
                await self.fail(publish_id, code, message, own)
            return
        now = time.time()
        res = await conn.execute(_FAIL, {"pid": publish_id, "code": code, "msg": message, "now": now})
        if res.rowcount:
            await self._close_open_deliveries(
                conn, publish_id, "failed", now, error_code=code, error_message=message
            )
            await JobQueue.delete_for_publish(conn, publish_id)

    async def _close_open_deliveries(
        self,
        conn: AsyncConnection,
        publish_id: str,
        to: str,
        now: float,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """Turn every ``pending``/``retrying`` delivery into ``to`` and move the counters.

        Counted with one grouped query and changed with one UPDATE, so a publish of millions of
        recipients never travels to Python. Callers hold the publish row (they just updated its
        status), so outcome and planning transactions, which take it shared, wait meanwhile.
        """
        open_states = ("pending", "retrying")
        rows = (
            await conn.execute(
                sa.select(deliveries.c.provider, deliveries.c.status, sa.func.count())
                .where(deliveries.c.publish_id == publish_id, deliveries.c.status.in_(open_states))
                .group_by(deliveries.c.provider, deliveries.c.status)
            )
        ).all()
        if not rows:
            return
        values: dict[str, object] = {"status": to, "updated_at": now}
        if error_code is not None:
            values.update(error_code=error_code, error_message=error_message)
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.publish_id == publish_id, deliveries.c.status.in_(open_states))
            .values(**values)
        )
        moved: dict[str, dict[str, int]] = {}
        for provider, status, n in rows:
            c = moved.setdefault(provider, {to: 0, "retrying": 0})
            c[to] += int(n)
            if status == "retrying":
                c["retrying"] -= int(n)
        for provider, deltas in moved.items():
            await self.bump(conn, publish_id, provider, **deltas)

    async def stuck(self, limit: int = 100) -> list[str]:
        """Publishes that are dispatching with planning done but no job left.

        Normally the last batch closes its publish right after its commit; if the process died
        in between (or that check failed), nothing else would, so a periodic sweep retries it.
        """
        q = (
            sa.select(publishes.c.id)
            .where(
                publishes.c.status == "dispatching",
                publishes.c.planning_done.is_(True),
                ~sa.exists().where(jobs.c.publish_id == publishes.c.id),
            )
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [r.id for r in (await conn.execute(q)).all()]

    async def finish_if_done(self, publish_id: str) -> str | None:
        """Close the publish once every planned recipient has a final outcome.

        Runs after the outcome transaction committed, so the last committer always sees all
        counts. A cheap read decides whether to try; the decision is then re-made inside the
        closing transaction with the publish row locked, so a dead-letter replay that reopened
        work in between is never closed over, and exactly one of several checkers wins.
        """
        async with self.db.read() as conn:
            if await self._closable(conn, publish_id) is None:
                return None
        async with self.db.write() as conn:
            return await self.close_if_done(conn, publish_id)

    async def close_if_done(self, conn: AsyncConnection, publish_id: str) -> str | None:
        """:meth:`finish_if_done`'s decision and update, inside the caller's write transaction
        (the planner closes an empty publish in the transaction that ends its planning)."""
        status = await self._closable(conn, publish_id, lock=True)
        if status is None:
            return None
        await conn.execute(_CLOSE, {"pid": publish_id, "st": status, "now": time.time()})
        return status

    async def _closable(self, conn: AsyncConnection, publish_id: str, *, lock: bool = False) -> str | None:
        """The status the publish should close with now (``completed``/``expired``), or None."""
        params = {"pid": publish_id}
        pub = (await conn.execute(_closable_publish(self.db.dialect, lock), params)).first()
        if pub is None or pub.status != "dispatching" or not pub.planning_done:
            return None
        planned, final, expired = (int(x) for x in (await conn.execute(_TOTALS, params)).one())
        if final < planned:
            return None
        return "expired" if planned > 0 and expired == planned else "completed"

    # ---- cancel ---------------------------------------------------------------------------

    async def status_locked(
        self, conn: AsyncConnection, publish_id: str, *, exclusive: bool = False
    ) -> str | None:
        """The publish's status inside a write transaction, with a shared row lock on PostgreSQL.

        Outcome and planning transactions take it; :meth:`cancel` updates the row first, so a
        cancel waits for the transactions in progress and every later one sees ``cancelled``.
        (SQLite serialises writers anyway.) ``exclusive``: ``FOR UPDATE`` instead, for a transaction
        that will update the publish row after touching its counters (lock the row first, as
        every other transaction does, or two of them deadlock).
        """
        q = _status_locked(self.db.dialect, exclusive)
        return (await conn.execute(q, {"pid": publish_id})).scalar()

    async def cancel(self, app_id: str, publish_id: str) -> tuple[Publish | None, bool]:
        """Cancel an open publish: returns ``(publish, changed)``; ``(None, False)`` if unknown.

        In one transaction: the status, every ``pending``/``retrying`` delivery becomes
        ``cancelled`` (counters moved to match) and the publish's queued jobs are deleted.
        Batches already being sent finish and record their real outcome.
        """
        now = time.time()
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.update(publishes)
                .where(
                    publishes.c.id == publish_id,
                    publishes.c.app_id == app_id,
                    publishes.c.status.in_(("accepted", "dispatching")),
                )
                .values(status="cancelled", completed_at=now)
            )
            changed = bool(res.rowcount)
            if changed:
                await self._close_open_deliveries(conn, publish_id, "cancelled", now)
                await JobQueue.delete_for_publish(conn, publish_id)
        return await self.get(app_id, publish_id), changed

    # ---- dead letters ----------------------------------------------------------------------

    async def dead_letters(
        self,
        app_id: str,
        *,
        provider: str | None,
        publish_id: str | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[DeadLetter], tuple[str, str] | None]:
        """Dead deliveries of the app's publishes, ordered by (publish, recipient)."""
        cond = [deliveries.c.dead.is_(True), publishes.c.app_id == app_id]
        if provider:
            cond.append(deliveries.c.provider == provider)
        if publish_id:
            cond.append(deliveries.c.publish_id == publish_id)
        if after:
            cond.append(sa.tuple_(deliveries.c.publish_id, deliveries.c.recipient_id) > sa.tuple_(*after))
        q = (
            sa.select(deliveries)
            .join(publishes, publishes.c.id == deliveries.c.publish_id)
            .where(*cond)
            .order_by(deliveries.c.publish_id, deliveries.c.recipient_id)
            .limit(limit + 1)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        items = [
            DeadLetter(
                r.publish_id,
                r.recipient_id,
                r.device_id,
                r.provider,
                r.attempts,
                r.error_code,
                r.error_message,
                r.updated_at,
                r.error_class,
            )
            for r in rows[:limit]
        ]
        nxt = (items[-1].publish_id, items[-1].recipient_id) if len(rows) > limit else None
        return items, nxt

    async def dead_for_replay(
        self,
        app_id: str,
        *,
        keys: Sequence[tuple[str, str]] | None,
        provider: str | None,
        publish_id: str | None,
        limit: int,
    ) -> list[Any]:
        """Dead deliveries to replay, with what is needed to rebuild their targets.

        Rows carry ``publish_id, recipient_id, device_id, provider, request`` (the publish's
        stored request, for raw tokens) and the device's ``token, environment, device_status``.
        Only publishes still open or ``completed`` qualify (a cancelled one stays cancelled).
        """
        cond = [
            deliveries.c.dead.is_(True),
            deliveries.c.status == "failed",
            publishes.c.app_id == app_id,
            publishes.c.status.in_(("dispatching", "completed")),
        ]
        if keys is not None:
            if not keys:
                return []
            cond.append(sa.tuple_(deliveries.c.publish_id, deliveries.c.recipient_id).in_(list(keys)))
        if provider:
            cond.append(deliveries.c.provider == provider)
        if publish_id:
            cond.append(deliveries.c.publish_id == publish_id)
        q = (
            sa.select(
                deliveries.c.publish_id,
                deliveries.c.recipient_id,
                deliveries.c.device_id,
                deliveries.c.provider,
                publishes.c.request,
                devices.c.token,
                devices.c.environment,
                devices.c.status.label("device_status"),
            )
            .join(publishes, publishes.c.id == deliveries.c.publish_id)
            .outerjoin(devices, devices.c.id == deliveries.c.device_id)
            .where(*cond)
            .order_by(deliveries.c.publish_id, deliveries.c.recipient_id)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return list((await conn.execute(q)).all())

    async def requeue_dead(
        self,
        app_id: str,
        publish_id: str,
        provider: str,
        targets: Sequence[list[str]],
        batch_size: int,
    ) -> int:
        """Put dead deliveries back in the queue (attempt 1): ``failed`` → ``retrying``.

        Only rows still dead move (a concurrent replay cannot double them); a ``completed``
        publish is reopened so the dispatcher runs the jobs and closes it again.
        """
        by_id = {t[0]: t for t in targets}
        now = time.time()
        async with self.db.write() as conn:
            # An exclusive row lock from the start: two replays of one publish taking it shared
            # and then both updating it would deadlock on PostgreSQL.
            status = (
                await conn.execute(
                    lock_rows(
                        self.db.dialect, sa.select(publishes.c.status).where(publishes.c.id == publish_id)
                    )
                )
            ).scalar()
            if status not in ("dispatching", "completed"):
                return 0
            rows = (
                await conn.execute(
                    sa.update(deliveries)
                    .where(
                        deliveries.c.publish_id == publish_id,
                        deliveries.c.recipient_id.in_(list(by_id)),
                        deliveries.c.dead.is_(True),
                        deliveries.c.status == "failed",
                    )
                    .values(status="retrying", dead=False, updated_at=now)
                    .returning(deliveries.c.recipient_id)
                )
            ).all()
            moved = [by_id[r.recipient_id] for r in rows]
            if not moved:
                return 0
            if status == "completed":
                await conn.execute(
                    sa.update(publishes)
                    .where(publishes.c.id == publish_id)
                    .values(status="dispatching", completed_at=None)
                )
            await self.bump(conn, publish_id, provider, failed=-len(moved), retrying=len(moved))
            await JobQueue.enqueue_many(
                conn,
                [
                    {
                        "kind": "dispatch",
                        "app_id": app_id,
                        "publish_id": publish_id,
                        # ``replay``: these recipients are counted as retrying already.
                        "payload": {
                            "provider": provider,
                            "attempt": 1,
                            "replay": True,
                            "targets": moved[k : k + batch_size],
                        },
                    }
                    for k in range(0, len(moved), batch_size)
                ],
            )
        return len(moved)
