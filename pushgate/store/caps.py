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
A. Every ``take`` therefore acquires its rows in one global order: first its ``cap_marks`` rows
(sorted by scope), then its counter rows in ascending (window start, scope). One multi-row
``INSERT … VALUES`` processes its rows in the order given, locking each (new or existing) as it
reaches it, so a statement whose rows are sorted locks in sorted order; chunks of 500 are sorted
ranges run one after another, and window starts are visited in ascending order (a heap), so a
delayed notification's next window comes after every window already taken. This is why the
increment is an upsert and not ``INSERT … DO NOTHING`` + ``UPDATE … WHERE scope IN (…)``: the
insert would hold the *new* rows first and the update lock the existing ones afterwards (and in
whatever order its scan visits them), two different orders. ``SELECT … FOR UPDATE ORDER BY`` would
fix the update's order but not the insert's. Requests of one window start with different limits
cannot share the conditional statement, so such a chunk locks every row with a no-op upsert
(``SET count = count``, which returns the current count under the lock) and then increments the
rows that have room: two statements, the same lock order. A caller should make one ``take`` per
transaction (all of a page's requests at once): rows locked by an earlier call are outside this
order.

Why marks. A user's second device on a later planning page of the same publish must get the same
decision without taking a second slot. ``take`` first claims ``(publish_id, scope)`` in
``cap_marks`` (``INSERT … ON CONFLICT DO NOTHING RETURNING scope``): the scopes it inserted are
decided now and their decision is written into the mark; the others were decided before and their
mark is read back. Claiming first (rather than reading the marks, then inserting) also covers two
pages of one publish planned at once: the second waits on the first's uncommitted mark and then
reads its decision. A rolled-back page takes its marks and its counts with it, so a re-run decides
afresh.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.schema import cap_counters, cap_marks

DROP = "drop"
DELAY = "delay"
ACTIONS = (DROP, DELAY)
#: Scopes per statement: IN lists and multi-row VALUES stay well under both drivers' limits.
CHUNK = 500

_COUNT = cap_counters.c["count"]
_KEY = ["app_id", "scope", "window_start"]
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
    now = clock.now()
    ours: set[str] = set()
    for chunk in _chunks(scopes):
        rows = [{"publish_id": publish_id, "scope": s, "release_at": None, "created_at": now} for s in chunk]
        claim = insert_ignoring_conflicts(dialect, cap_marks, ["publish_id", "scope"]).values(rows)
        ours.update((await conn.execute(claim.returning(cap_marks.c.scope))).scalars())
    decided: dict[str, float | None] = {}
    earlier = [s for s in scopes if s not in ours]
    for chunk in _chunks(earlier):
        q = sa.select(cap_marks.c.scope, cap_marks.c.release_at).where(
            cap_marks.c.publish_id == publish_id, cap_marks.c.scope.in_(chunk)
        )
        decided.update({scope: release for scope, release in (await conn.execute(q)).all()})
    if ours:
        counted = await _count(conn, dialect, app_id, {s: wanted[s] for s in ours}, max_windows)
        await _record(conn, publish_id, counted)
        decided.update(counted)
    return decided


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
        rows = [
            {
                "app_id": app_id,
                "scope": scope,
                "window_start": start,
                "count": 1 if len(limits) == 1 else 0,
                "window_end": start + request.window_seconds,
            }
            for scope, request in chunk
        ]
        insert = _insert(dialect).values(rows)
        if len(limits) == 1:
            # The conditional increment: a new row starts at 1 (every limit here is >= 1), an
            # existing one is incremented under its row lock only while it has room.
            (limit,) = limits
            take_slot = insert.on_conflict_do_update(
                index_elements=_KEY, set_={"count": _COUNT + 1}, where=_COUNT < limit
            )
            won.update((await conn.execute(take_slot.returning(cap_counters.c.scope))).scalars())
            continue
        # Mixed limits: lock every row in order with a no-op upsert that returns its count (the
        # newest committed one: DO UPDATE waited for the lock), then count the ones with room.
        lock = insert.on_conflict_do_update(index_elements=_KEY, set_={"count": _COUNT})
        locked = await conn.execute(lock.returning(cap_counters.c.scope, _COUNT))
        counts: dict[str, int] = {scope: int(count) for scope, count in locked.all()}
        request_of = dict(chunk)
        room = [scope for scope, count in counts.items() if count < request_of[scope].limit]
        if room:
            await conn.execute(
                sa.update(cap_counters)
                .where(
                    cap_counters.c.app_id == app_id,
                    cap_counters.c.window_start == start,
                    cap_counters.c.scope.in_(room),
                )
                .values({_COUNT: _COUNT + 1})
            )
            won.update(room)
    return won


async def _record(conn: AsyncConnection, publish_id: str, decided: dict[str, float | None]) -> None:
    """Write the decisions into the marks this call claimed (claimed as dropped: ``None``), one
    ``UPDATE`` per release time and chunk."""
    by_release: dict[float, list[str]] = defaultdict(list)
    for scope, release in decided.items():
        if release is not None:
            by_release[release].append(scope)
    for release, scopes in by_release.items():
        for chunk in _chunks(sorted(scopes)):
            await conn.execute(
                sa.update(cap_marks)
                .where(cap_marks.c.publish_id == publish_id, cap_marks.c.scope.in_(chunk))
                .values(release_at=release)
            )


async def prune(conn: AsyncConnection, before: float) -> int:
    """Delete the counters of windows that ended before ``before`` and the marks created before it;
    the number of rows deleted. A mark must outlive the planning of its publish (a later page
    would count again without it): pass a ``before`` older than any publish still planning."""
    counters = await conn.execute(sa.delete(cap_counters).where(cap_counters.c.window_end < before))
    marks = await conn.execute(sa.delete(cap_marks).where(cap_marks.c.created_at < before))
    return int(counters.rowcount) + int(marks.rowcount)


def _insert(dialect: str) -> postgresql.Insert | sqlite.Insert:
    return postgresql.insert(cap_counters) if dialect == "postgresql" else sqlite.insert(cap_counters)


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]
