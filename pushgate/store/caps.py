"""Frequency caps: counting "at most N notifications per window" inside the planner's transaction.

A cap is a *scope* (a string the caller builds: ``user:alice|marketing|86400``), a limit and a
window length. Windows are fixed and aligned on the epoch (``[floor(t/w)*w, +w)``); one row of
``cap_counters`` per (app, scope, window start) counts the notifications that go in it. A
notification is counted in the window it goes in: with ``delay``, a notification that finds its
window full is counted (and later released) in the first later window with room.

Why it is race-free on both databases. Every counter is changed by a single
``INSERT … ON CONFLICT (key) DO UPDATE SET count = count + 1 WHERE count < :limit RETURNING
scope``: a new row is inserted with ``count = 1``, an existing one is incremented only if it has
room, and the rows returned are the ones that got a slot. There is no read in Python followed by
a write. On PostgreSQL under READ COMMITTED, ``DO UPDATE`` first locks the conflicting row; a
second planner that wants the same row waits on that lock until the first commits (or rolls
back), then evaluates ``count < :limit`` on the newest committed version, so two planners can
never both take the last slot. A concurrent inserter of the same new row waits likewise (the
unique index makes it wait for the inserting transaction). SQLite has one writer at a time
(``Database.write`` holds a lock in-process, the database file lock across processes), so the
statement runs alone there.

Why no deadlocks (PostgreSQL). Two planners whose pages share users take the same counter rows,
and a transaction that holds row A and waits for B deadlocks with one that holds B and waits for
A. Every ``take`` therefore acquires its rows in one global order: its counter rows in ascending
(window start, scope), then its ``cap_marks`` rows (sorted by scope). One multi-row insert
processes its rows in the order given, locking each (new or existing) as it reaches it, so a
statement whose rows are sorted locks in sorted order; chunks of 500 are sorted ranges run one
after another, and window starts are visited in ascending order (a heap), so a delayed
notification's next window comes after every window already taken. This is why the increment is
an upsert and not ``INSERT … DO NOTHING`` + ``UPDATE … WHERE scope IN (…)``: the insert would hold
the *new* rows first and the update lock the existing ones afterwards (and in whatever order its
scan visits them), two different orders; ``SELECT … FOR UPDATE ORDER BY`` would fix the update's
order but not the insert's. Requests of one window start with different limits cannot share the
conditional statement, so such a chunk locks every row with a no-op upsert (``SET count =
count``, which returns the current count under the lock) and then increments the rows with room
(rows it already holds). A caller should make one ``take`` per transaction (all of a page's
requests at once): rows locked by an earlier call are outside this order. The two-process test
passes the same caps in opposite orders; with the callers' orders PostgreSQL reported deadlocks.

Why marks. A user's second device on a later planning page of the same publish must get the same
decision without taking a second slot. ``take`` reads the marks of (publish, scopes) first (one
query per 500 scopes) and answers those from them; it counts only the others and inserts their
marks with the decision (``INSERT … ON CONFLICT DO NOTHING RETURNING scope``). Two pages of one
publish planned at once: the second waits on the first's counter rows, then its mark insert
waits on the first's uncommitted mark and finds it; it reads that decision and gives back the
slot it took (it still holds those rows, so nobody saw it). A rolled-back page takes its marks
and its counts with it, so a re-run decides afresh.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.store.schema import cap_counters, cap_marks

DROP = "drop"
DELAY = "delay"
ACTIONS = (DROP, DELAY)
#: Scopes per statement: IN lists and multi-row VALUES stay well under both drivers' limits.
CHUNK = 500
#: A limit no counter reaches (PostgreSQL's int4 maximum).
_NO_LIMIT = 2**31 - 1

_COUNT = cap_counters.c["count"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CapRequest:
    """One cap applied to one notification (a notification under several caps makes several)."""

    scope: str
    limit: int
    window_seconds: int
    action: str
    earliest: float

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, not {self.window_seconds}")
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {self.action!r}")


def window_start(t: float, window_seconds: int) -> float:
    """Start of the epoch-aligned window of ``window_seconds`` that contains ``t``."""
    return float(math.floor(t / window_seconds) * window_seconds)


async def take(
    conn: AsyncConnection,
    dialect: str,
    app_id: str,
    publish_id: str,
    requests: Sequence[CapRequest],
    *,
    max_windows: int = 32,
) -> dict[str, float | None]:
    """For each request's scope: the time the notification may go (its ``earliest`` if the window
    containing ``earliest`` has room; with ``delay``, the start of the first later window with
    room, searching at most ``max_windows`` windows in all, the one containing ``earliest``
    included); ``None``: dropped (``drop`` and no room, or ``delay`` and no room within
    ``max_windows``). A slot is counted in the window the notification goes in.

    Asked again for a (publish, scope) it already decided (in this transaction or a committed
    one), it returns that decision and counts nothing. A scope repeated in ``requests`` counts
    once (its first request decides). Run it inside the planner's write transaction.
    """
    wanted: dict[str, CapRequest] = {}
    for request in requests:
        wanted.setdefault(request.scope, request)
    if not wanted:
        return {}
    scopes = sorted(wanted)
    decided = await _marks(conn, publish_id, scopes)
    fresh = {s: wanted[s] for s in scopes if s not in decided}
    if not fresh:
        return decided
    counted = await _count(conn, dialect, app_id, fresh, max_windows)
    taken_before = await _remember(conn, dialect, publish_id, counted)
    if taken_before:
        # Another transaction of this publish decided these scopes while we counted (it
        # committed first: our insert waited for it). Its decision stands; give our slots back.
        earlier = await _marks(conn, publish_id, taken_before)
        await _give_back(conn, app_id, {s: (counted[s], fresh[s]) for s in earlier})
        counted.update(earlier)
    decided.update(counted)
    return decided


async def _marks(conn: AsyncConnection, publish_id: str, scopes: Sequence[str]) -> dict[str, float | None]:
    """The decisions already made for ``publish_id`` among ``scopes``."""
    found: dict[str, float | None] = {}
    for chunk in _chunks(scopes):
        rows: list[Any] = list(
            (await conn.execute(_MARKS, {"b_publish": publish_id, "b_scopes": chunk})).all()
        )
        found.update({str(scope): release for scope, release in rows})
    return found


async def _remember(
    conn: AsyncConnection, dialect: str, publish_id: str, decided: dict[str, float | None]
) -> list[str]:
    """Insert the marks of ``decided``; the scopes whose mark was already there."""
    now = clock.now()
    scopes = sorted(decided)
    inserted: set[str] = set()
    for chunk in _chunks(scopes):
        params: tuple[Any, ...] = (
            (publish_id, now, list(chunk), [decided[s] for s in chunk])
            if dialect == "postgresql"
            else tuple(x for s in chunk for x in (publish_id, s, decided[s], now))
        )
        rows: list[Any] = list((await conn.exec_driver_sql(_remember_sql(dialect, len(chunk)), params)).all())
        inserted.update(str(scope) for (scope,) in rows)
    return [s for s in scopes if s not in inserted]


async def _give_back(
    conn: AsyncConnection, app_id: str, taken: dict[str, tuple[float | None, CapRequest]]
) -> None:
    """Undo the slots this transaction took for ``taken`` (scope: (release, request)); rare."""
    for scope, (release, request) in sorted(taken.items()):
        if release is None:
            continue
        await conn.execute(
            sa.update(cap_counters)
            .where(
                cap_counters.c.app_id == app_id,
                cap_counters.c.scope == scope,
                cap_counters.c.window_start == window_start(release, request.window_seconds),
            )
            .values({_COUNT: _COUNT - 1})
        )


async def _count(
    conn: AsyncConnection, dialect: str, app_id: str, wanted: dict[str, CapRequest], max_windows: int
) -> dict[str, float | None]:
    """Take a slot for every scope in ``wanted``, window start by window start in ascending order
    (the lock order in the module's docstring), moving ``delay`` losers on to their next window."""
    decided: dict[str, float | None] = {}
    pending: dict[float, list[str]] = defaultdict(list)
    tried: dict[str, int] = {}
    for scope, request in wanted.items():
        if request.limit <= 0:
            decided[scope] = None  # no window ever has room
            continue
        pending[window_start(request.earliest, request.window_seconds)].append(scope)
        tried[scope] = 1
    starts = list(pending)
    heapq.heapify(starts)
    while starts:
        start = heapq.heappop(starts)
        group = sorted(pending.pop(start))
        won = await _take_window(conn, dialect, app_id, start, [(s, wanted[s]) for s in group])
        for scope in group:
            request = wanted[scope]
            if scope in won:
                decided[scope] = max(request.earliest, start)
            elif request.action == DELAY and tried[scope] < max_windows:
                tried[scope] += 1
                later = start + request.window_seconds
                if later not in pending:
                    heapq.heappush(starts, later)
                pending[later].append(scope)
            else:
                decided[scope] = None
    return decided


async def _take_window(
    conn: AsyncConnection, dialect: str, app_id: str, start: float, items: list[tuple[str, CapRequest]]
) -> set[str]:
    """The scopes (``items`` sorted by scope) that got a slot in the window starting at ``start``."""
    won: set[str] = set()
    for chunk in _chunks(items):
        limits = {request.limit for _, request in chunk}
        mixed = len(limits) > 1
        # A new row starts at 1 (every limit here is >= 1) unless the chunk has mixed limits.
        initial = 0 if mixed else 1
        params = _take_params(dialect, app_id, start, initial, chunk)
        sql = _take_sql(dialect, len(chunk), mixed)
        if not mixed:
            # The conditional increment: an existing row is incremented under its row lock
            # only while it has room; the rows returned got a slot.
            got = await conn.exec_driver_sql(sql, (*params, min(*limits, _NO_LIMIT)))
            won.update(scope for (scope,) in got.all())
            continue
        # Mixed limits: lock every row in order with a no-op upsert that returns its count (the
        # newest committed one: DO UPDATE waited for the lock), then count the ones with room.
        locked = await conn.exec_driver_sql(sql, tuple(params))
        rows: list[Any] = list(locked.all())
        counts = {str(scope): int(count) for scope, count in rows}
        request_of = dict(chunk)
        room = [scope for scope, count in counts.items() if count < request_of[scope].limit]
        if room:
            # The rows are ours (locked): the conditional upsert with a limit no count reaches
            # finds each by its key (an ``UPDATE … WHERE scope IN (…)`` was planned as a scan of
            # the app's whole window on a table without statistics yet: 60 ms per chunk).
            rooms = [(s, request_of[s]) for s in room]
            await conn.exec_driver_sql(
                _take_sql(dialect, len(rooms), False),
                (*_take_params(dialect, app_id, start, 1, rooms), _NO_LIMIT),
            )
            won.update(room)
    return won


async def prune(conn: AsyncConnection, before: float) -> int:
    """Delete the counters of windows that ended before ``before`` and the marks created before it;
    the number of rows deleted. A mark must outlive the planning of its publish (a later page
    would count again without it): pass a ``before`` older than any publish still planning."""
    counters = await conn.execute(sa.delete(cap_counters).where(cap_counters.c.window_end < before))
    marks = await conn.execute(sa.delete(cap_marks).where(cap_marks.c.created_at < before))
    return int(counters.rowcount) + int(marks.rowcount)


_MARKS = sa.select(cap_marks.c.scope, cap_marks.c.release_at).where(
    cap_marks.c.publish_id == sa.bindparam("b_publish"),
    cap_marks.c.scope.in_(sa.bindparam("b_scopes", expanding=True)),
)

# The two multi-row inserts are text SQL: SQLAlchemy compiled a 500-row ``VALUES`` anew on every
# call (most of the time ``take`` took). PostgreSQL gets one text per statement, its rows as
# arrays (``unnest`` yields them in array order, so the rows are still locked in sorted order);
# SQLite one ``VALUES`` list per row count.


@lru_cache(maxsize=64)
def _remember_sql(dialect: str, rows: int) -> str:
    """Insert (publish, scope, release) marks, returning the scopes inserted (not there before)."""
    if dialect == "postgresql":
        source = "SELECT $1::varchar, s, r, $2::float8 FROM unnest($3::varchar[], $4::float8[]) AS u(s, r)"
    else:
        source = "VALUES " + ", ".join(["(?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO cap_marks (publish_id, scope, release_at, created_at) {source} "
        "ON CONFLICT (publish_id, scope) DO NOTHING RETURNING scope"
    )


def _take_params(
    dialect: str, app_id: str, start: float, initial: int, chunk: Sequence[tuple[str, CapRequest]]
) -> list[Any]:
    """The parameters of :func:`_take_sql` but its limit."""
    if dialect == "postgresql":
        return [app_id, start, initial, [s for s, _ in chunk], [float(r.window_seconds) for _, r in chunk]]
    return [x for s, r in chunk for x in (app_id, s, start, initial, start + r.window_seconds)]


@lru_cache(maxsize=64)
def _take_sql(dialect: str, rows: int, mixed: bool) -> str:
    """The counter upsert: with one limit (the last parameter), the conditional increment
    returning the scopes that got a slot; with mixed limits, the no-op lock returning every
    scope's count."""
    if dialect == "postgresql":
        source = (
            "SELECT $1::varchar, s, $2::float8, $3::int, $2::float8 + w "
            "FROM unnest($4::varchar[], $5::float8[]) AS u(s, w)"
        )
        limit = "$6::int"
    else:
        source = "VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * rows)
        limit = "?"
    action = (
        "SET count = cap_counters.count RETURNING scope, count"
        if mixed
        else f"SET count = cap_counters.count + 1 WHERE cap_counters.count < {limit} RETURNING scope"
    )
    return (
        f"INSERT INTO cap_counters (app_id, scope, window_start, count, window_end) {source} "
        f"ON CONFLICT (app_id, scope, window_start) DO UPDATE {action}"
    )


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]
