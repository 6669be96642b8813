"""Frequency-cap counting (``pushgate.store.caps``, issue 11): drop and delay, the window a slot is
counted in, one decision per (publish, scope), pruning, and the count staying exact when several
transactions, tasks and OS processes take slots of one scope at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from support.database import fresh_database
from support.postgres import PostgresServer

from pushgate.domain import clock
from pushgate.store.caps import CHUNK, DELAY, DROP, CapRequest, prune, take, window_start
from pushgate.store.db import Database
from pushgate.store.schema import cap_counters, cap_marks

pytestmark = pytest.mark.timeout(120)

APP = "app_caps"
HOUR = 3600
DAY = 86400
#: A time 100 s into an hour (and not on a day boundary): the first window's start is T - 100.
T = 1_800_000_100.0
START = T - 100
TAKER = pathlib.Path(__file__).parent.parent / "support" / "cap_taker.py"
ROOT = pathlib.Path(__file__).parent.parent.parent


def cap(
    scope: str = "user:alice|*|3600",
    limit: int = 2,
    *,
    action: str = DROP,
    window: int = HOUR,
    earliest: float = T,
) -> CapRequest:
    return CapRequest(scope=scope, limit=limit, window_seconds=window, action=action, earliest=earliest)


async def _take(
    db: Database, publish_id: str, *requests: CapRequest, max_windows: int = 32
) -> dict[str, Any]:
    async with db.write() as conn:
        return await take(conn, db.dialect, APP, publish_id, requests, max_windows=max_windows)


async def _one(db: Database, publish_id: str, request: CapRequest, max_windows: int = 32) -> float | None:
    decided = await _take(db, publish_id, request, max_windows=max_windows)
    assert set(decided) == {request.scope}
    release = decided[request.scope]
    assert release is None or isinstance(release, float)
    return release


async def _counters(db: Database, scope: str) -> dict[float, int]:
    """The counter rows of ``scope``: window start -> count."""
    async with db.read() as conn:
        q = sa.select(cap_counters.c.window_start, cap_counters.c["count"]).where(
            cap_counters.c.app_id == APP, cap_counters.c.scope == scope
        )
        return {float(start): int(count) for start, count in (await conn.execute(q)).all()}


async def _marks(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(cap_marks))).scalar_one())


def test_windows_are_aligned_on_the_epoch() -> None:
    assert window_start(T, HOUR) == START
    assert window_start(START, HOUR) == START
    assert window_start(START - 0.5, HOUR) == START - HOUR
    assert window_start(T, DAY) == 1_799_971_200.0


async def test_the_limit_reached_drops_and_other_publishes_count_separately(db: Database) -> None:
    request = cap(limit=2)
    assert await _one(db, "pub_1", request) == T
    assert await _one(db, "pub_2", request) == T
    assert await _counters(db, request.scope) == {START: 2}
    assert await _one(db, "pub_3", request) is None
    assert await _counters(db, request.scope) == {START: 2}
    # The next window has room again.
    assert await _one(db, "pub_4", cap(limit=2, earliest=T + HOUR)) == T + HOUR
    assert await _counters(db, request.scope) == {START: 2, START + HOUR: 1}


async def test_delay_goes_to_the_next_window_start_and_is_counted_there(db: Database) -> None:
    request = cap(limit=2, action=DELAY)
    assert [await _one(db, f"pub_{i}", request) for i in range(5)] == [
        T,
        T,
        START + HOUR,
        START + HOUR,
        START + 2 * HOUR,
    ]
    assert await _counters(db, request.scope) == {START: 2, START + HOUR: 2, START + 2 * HOUR: 1}


async def test_a_later_earliest_is_counted_in_its_own_window(db: Database) -> None:
    """A notification held until tomorrow 10:00 counts against tomorrow's window, not today's."""
    later = T + DAY + 0.25
    assert await _one(db, "pub_1", cap(limit=1, window=DAY, earliest=later)) == later
    assert await _counters(db, "user:alice|*|3600") == {window_start(later, DAY): 1}


async def test_delay_gives_up_after_max_windows(db: Database) -> None:
    request = cap(limit=1, action=DELAY)
    got = [await _one(db, f"pub_{i}", request, max_windows=3) for i in range(4)]
    assert got == [T, START + HOUR, START + 2 * HOUR, None]
    # Nothing was counted beyond the third window.
    assert await _counters(db, request.scope) == {START: 1, START + HOUR: 1, START + 2 * HOUR: 1}


async def test_a_zero_limit_never_has_room(db: Database) -> None:
    assert await _one(db, "pub_1", cap(limit=0, action=DELAY)) is None
    assert await _counters(db, "user:alice|*|3600") == {}


async def test_one_publish_counts_once_per_scope(db: Database) -> None:
    """A user's second device on a later page of the same publish gets the first decision."""
    request = cap(limit=1, action=DELAY)
    # Repeated within one call: counted once.
    assert await _take(db, "pub_1", request, request) == {request.scope: T}
    assert await _counters(db, request.scope) == {START: 1}
    # Asked again in a later transaction: the same answer, nothing counted.
    assert await _one(db, "pub_1", request) == T
    assert await _counters(db, request.scope) == {START: 1}
    # A delayed decision and a dropped one are remembered the same way.
    assert await _one(db, "pub_2", request) == START + HOUR
    assert await _one(db, "pub_2", request) == START + HOUR
    dropping = cap(scope="user:bob|*|3600", limit=1)
    assert await _one(db, "pub_1", dropping) == T
    assert await _one(db, "pub_2", dropping) is None
    assert await _one(db, "pub_2", dropping) is None
    assert await _counters(db, request.scope) == {START: 1, START + HOUR: 1}
    assert await _counters(db, dropping.scope) == {START: 1}
    # Old and new scopes in one call: the old keep their decision, the new one is counted.
    carol = cap(scope="user:carol|*|3600", limit=1)
    assert await _take(db, "pub_2", request, dropping, carol) == {
        request.scope: START + HOUR,
        dropping.scope: None,
        carol.scope: T,
    }
    assert await _counters(db, carol.scope) == {START: 1}
    assert await _marks(db) == 5


async def test_two_pages_of_one_publish_at_once_count_once(db: Database) -> None:
    """The second page's transaction waits for the first page's mark (PostgreSQL: on the
    uncommitted row; SQLite: on the writer lock) and then answers with its decision."""
    request = cap(limit=2)
    taken, release = asyncio.Event(), asyncio.Event()

    async def first_page() -> dict[str, Any]:
        async with db.write() as conn:
            decided = await take(conn, db.dialect, APP, "pub_1", [request])
            taken.set()
            await release.wait()
            return decided

    async def second_page() -> dict[str, Any]:
        await taken.wait()
        return await _take(db, "pub_1", request)

    first = asyncio.create_task(first_page())
    second = asyncio.create_task(second_page())
    await taken.wait()
    await asyncio.sleep(0.3)
    assert not second.done()
    release.set()
    assert await first == await second == {request.scope: T}
    assert await _counters(db, request.scope) == {START: 1}


async def test_a_rolled_back_transaction_takes_its_count_and_its_decision_with_it(db: Database) -> None:
    request = cap(limit=1)
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            assert await take(conn, db.dialect, APP, "pub_1", [request]) == {request.scope: T}
            raise RuntimeError("the page failed")
    assert await _counters(db, request.scope) == {}
    assert await _marks(db) == 0
    assert await _one(db, "pub_2", request) == T
    assert await _one(db, "pub_1", request) is None


async def test_category_and_user_scopes_are_independent(db: Database) -> None:
    marketing = cap(scope="user:alice|marketing|86400", limit=1, window=DAY)
    news = cap(scope="user:alice|news|86400", limit=1, window=DAY)
    bob = cap(scope="user:bob|marketing|86400", limit=1, window=DAY)
    assert await _take(db, "pub_1", marketing) == {marketing.scope: T}
    assert await _take(db, "pub_2", news, bob) == {news.scope: T, bob.scope: T}
    assert await _take(db, "pub_3", marketing, news, bob) == {
        marketing.scope: None,
        news.scope: None,
        bob.scope: None,
    }


async def test_several_caps_of_one_notification_with_different_limits(db: Database) -> None:
    """A per-device and a per-user cap whose windows start at the same second: one chunk with
    two limits (counted under row locks, then incremented)."""
    device = cap(scope="device:d1|*|3600", limit=1, action=DELAY)
    user = cap(scope="user:alice|*|86400", limit=2, window=DAY, earliest=window_start(T, DAY))
    user_early = cap(scope="user:alice|*|3600", limit=3, earliest=window_start(T, DAY))
    day = window_start(T, DAY)
    both = cap(scope="device:d1|*|86400", limit=1, window=DAY, earliest=day)
    assert await _take(db, "pub_1", both, user) == {both.scope: day, user.scope: day}
    assert await _take(db, "pub_2", both, user, user_early) == {
        both.scope: None,
        user.scope: day,
        user_early.scope: day,
    }
    assert await _take(db, "pub_3", both, user, user_early) == {
        both.scope: None,
        user.scope: None,
        user_early.scope: day,
    }
    assert await _counters(db, both.scope) == {day: 1}
    assert await _counters(db, user.scope) == {day: 2}
    assert await _counters(db, user_early.scope) == {day: 2}
    assert await _take(db, "pub_4", device) == {device.scope: T}


async def test_more_scopes_than_one_statement_takes(db: Database) -> None:
    """A page of thousands of users: chunks of ``CHUNK`` scopes, some with another limit."""
    n = 2 * CHUNK + 37
    requests = [cap(scope=f"user:u{i:05d}|*|3600", limit=1 + (i % 7 == 0), action=DELAY) for i in range(n)]
    assert await _take(db, "pub_1", *requests) == {r.scope: T for r in requests}
    second = await _take(db, "pub_2", *reversed(requests))
    assert second == {r.scope: T if r.limit == 2 else START + HOUR for r in requests}
    async with db.read() as conn:
        q = sa.select(cap_counters.c.window_start, sa.func.sum(cap_counters.c["count"])).group_by(
            cap_counters.c.window_start
        )
        totals = {float(s): int(c) for s, c in (await conn.execute(q)).all()}
    twos = sum(1 for r in requests if r.limit == 2)
    assert totals == {START: n + twos, START + HOUR: n - twos}
    assert await _marks(db) == 2 * n


async def test_prune_deletes_ended_windows_and_old_marks(db: Database) -> None:
    try:
        now = clock.now()
        clock.CLOCK.advance(-3 * HOUR)
        old = cap(scope="user:old|*|3600", limit=5, earliest=now - 3 * HOUR)
        await _take(db, "pub_old", old)
        clock.CLOCK.reset()
        current = cap(scope="user:new|*|3600", limit=5, earliest=now)
        await _take(db, "pub_new", current)
        async with db.write() as conn:
            assert await prune(conn, now - HOUR) == 2  # the old window and the old mark
        assert await _counters(db, old.scope) == {}
        assert await _counters(db, current.scope) == {window_start(now, HOUR): 1}
        assert await _marks(db) == 1
        async with db.write() as conn:
            assert await prune(conn, now - HOUR) == 0
    finally:
        clock.CLOCK.reset()


async def test_concurrent_tasks_never_exceed_the_limit(db: Database) -> None:
    """50 publishes taking one user's slot from concurrent tasks of one process."""
    request = cap(limit=7)
    results = await asyncio.gather(*(_one(db, f"pub_{i}", request) for i in range(50)))
    assert Counter(results) == {T: 7, None: 43}
    assert await _counters(db, request.scope) == {START: 7}


def _spawn(spec: dict[str, Any], log: pathlib.Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(TAKER), json.dumps(spec)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def _run_processes(url: str, tmp_path: pathlib.Path, specs: list[dict[str, Any]]) -> dict[str, Any]:
    """Start one process per spec, release them together, and merge their decisions."""
    procs = [
        _spawn({"url": url, "app_id": APP, **s}, tmp_path / f"taker{i}.log") for i, s in enumerate(specs)
    ]
    try:
        for i, proc in enumerate(procs):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", (line, (tmp_path / f"taker{i}.log").read_text())
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        merged: dict[str, Any] = {}
        for i, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0, (tmp_path / f"taker{i}.log").read_text()
            merged.update(json.loads(out))
        return merged
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(params=["postgresql", "sqlite"])
async def shared_url(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> AsyncIterator[tuple[str, Database]]:
    """A migrated database of either kind that other processes can reach."""
    postgres: Callable[[], PostgresServer] = lambda: request.getfixturevalue("postgres")  # noqa: E731
    with fresh_database(request.param, tmp_path, postgres) as url:
        database = Database(url)
        await database.migrate()
        try:
            yield url, database
        finally:
            await database.dispose()


def _spec(prefix: str, requests: list[CapRequest], **extra: Any) -> dict[str, Any]:
    return {
        "publishes": [f"{prefix}{i:03d}" for i in range(50)],
        "concurrency": 5,
        "max_windows": 32,
        "requests": [
            {f: getattr(r, f) for f in ("scope", "limit", "window_seconds", "action", "earliest")}
            for r in requests
        ],
        **extra,
    }


async def test_two_processes_never_exceed_the_limit(
    shared_url: tuple[str, Database], tmp_path: pathlib.Path
) -> None:
    """Two worker processes (five transactions at a time each) take one user's slot for 50
    publishes each: exactly 7 of the 100 go, and the counter says 7."""
    url, db = shared_url
    request = cap(limit=7)
    decided = _run_processes(url, tmp_path, [_spec("pa_", [request]), _spec("pb_", [request])])
    assert len(decided) == 100
    assert Counter(d[request.scope] for d in decided.values()) == {T: 7, None: 93}
    assert await _counters(db, request.scope) == {START: 7}
    assert await _marks(db) == 100


async def test_two_processes_delaying_under_three_caps_fill_windows_in_order(
    shared_url: tuple[str, Database], tmp_path: pathlib.Path
) -> None:
    """Each notification is under a per-user cap (7 an hour), a per-category one (6 an hour) and a
    per-device one (5 an hour) that share their windows, passed in opposite orders by the two
    processes (the lock order is the store's own, so none deadlocks: with the callers' orders,
    PostgreSQL reported a deadlock in most runs): each window gets exactly its limit, in order,
    and the counters agree with the decisions."""
    url, db = shared_url
    user = cap(scope="user:alice|*|3600", limit=7, action=DELAY)
    category = cap(scope="user:alice|marketing|3600", limit=6, action=DELAY)
    device = cap(scope="device:d1|*|3600", limit=5, action=DELAY)
    requests = [user, category, device]
    specs = [
        _spec("pa_", requests, concurrency=8),
        _spec("pb_", requests, concurrency=8, scopes_reversed=True),
    ]
    decided = _run_processes(url, tmp_path, specs)
    assert len(decided) == 100
    for request in requests:
        per_window = Counter(d[request.scope] for d in decided.values())
        full, rest = divmod(100, request.limit)
        expected = {T: request.limit} | {START + k * HOUR: request.limit for k in range(1, full)}
        if rest:
            expected[START + full * HOUR] = rest
        assert per_window == expected, request.scope
        counters = await _counters(db, request.scope)
        assert counters == {START + k * HOUR: n for k, n in enumerate(expected.values())}
