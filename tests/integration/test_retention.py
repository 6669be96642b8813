"""Retention (issue 10): finished publishes, their delivery records, counters, dead letters and
leftover jobs are deleted ``retention.days`` after they closed, in bounded batches, by a
background task of every worker process; open publishes are never touched.

Most tests call the engine's own sweep with an explicit ``now`` (a time the test took between
two publishes), so "older than the cutoff" is decided without sleeping; one test lets the
background task do it with a retention of two seconds, and the large-delete test watches the
background task delete thousands of seeded publishes in batches while publishes keep flowing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from support.api import fcm_token, paged, publish, publish_status, register, wait_final
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.engine.retention import DAY, Retention
from pushgate.engine.worker import Engine
from pushgate.store.db import Database
from pushgate.store.schema import deliveries, jobs, publish_stats, publishes

pytestmark = pytest.mark.timeout(120)


def _engine(gw: Gateway) -> Engine:
    engine = gw.app.state.services.engine
    assert isinstance(engine, Engine)
    return engine


async def _device(client: httpx.AsyncClient, channel: str) -> dict[str, Any]:
    return await register(client, provider="fcm", token=fcm_token(), platform="android", channels=[channel])


async def _publish(client: httpx.AsyncClient, channel: str) -> str:
    return await publish(client, recipients=[{"type": "channel", "channel": channel}])


async def _done(gw: Gateway, channel: str) -> str:
    pub = await _publish(gw.client, channel)
    await gw.wait_done(pub)
    return pub


async def _assert_gone(client: httpx.AsyncClient, publish_id: str) -> None:
    """The API answers 404 (the documented error shape) for the publish and its records."""
    for path in (f"/v1/publishes/{publish_id}", f"/v1/publishes/{publish_id}/deliveries"):
        r = await client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["code"] == "not_found"


async def _rows(gw: Gateway, table: sa.Table, publish_id: str) -> int:
    async with _engine(gw).db.read() as conn:
        q = sa.select(sa.func.count()).select_from(table).where(table.c.publish_id == publish_id)
        return int((await conn.execute(q)).scalar_one())


def _deleted(kind: str) -> float:
    return REGISTRY.get_sample_value("pushgate_retention_deleted_rows_total", {"kind": kind}) or 0.0


async def _leftover_job(gw: Gateway, publish_id: str) -> None:
    """A job of a closed publish due in an hour (as an older version or a crash could leave)."""
    app = await gw.app.state.services.apps.get_by_name("default")
    async with _engine(gw).db.write() as conn:
        await conn.execute(
            sa.insert(jobs).values(
                kind="dispatch",
                app_id=app.id,
                publish_id=publish_id,
                payload=json.dumps({"provider": "fcm", "attempt": 2, "targets": []}),
                run_at=time.time() + 3600,
                created_at=time.time(),
            )
        )


async def _moment() -> float:
    """A time strictly between what closed before and what closes after."""
    await asyncio.sleep(0.01)
    t = time.time()
    await asyncio.sleep(0.01)
    return t


async def test_old_publishes_records_and_jobs_go_recent_and_open_ones_stay(
    database_url: str, lab: Lab
) -> None:
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_RETENTION_DAYS="1")
    async with running_gateway(settings) as gw:
        for _ in range(2):
            await _device(gw.client, "r")
        waiting = await _device(gw.client, "w")
        lab.fault(provider="fcm", tokens=[waiting["token"]], error="503", retry_after=60)
        old = await _done(gw, "r")
        await _leftover_job(gw, old)
        assert (await _rows(gw, jobs, old), await _rows(gw, deliveries, old)) == (1, 2)
        cutoff = await _moment()
        recent = await _done(gw, "r")
        running = await _publish(gw.client, "w")  # kept open: its one device is retrying

        async def retrying() -> bool:
            return (await publish_status(gw.client, running))["counts"]["retrying"] == 1

        await wait_for(retrying, 15, "the open publish to wait for its retry")

        # A day after ``cutoff``: only what closed before it is past a one-day retention.
        got = await _engine(gw).retention.sweep(now=cutoff + DAY)
        assert got.rows() == {"publish": 1, "delivery": 2, "dead_letter": 0, "publish_stats": 1, "job": 1}
        await _assert_gone(gw.client, old)
        for table in (deliveries, jobs, publish_stats):
            assert await _rows(gw, table, old) == 0, table.name
        assert (await publish_status(gw.client, recent))["status"] == "completed"
        assert len(await gw.deliveries(recent)) == 2
        listed = {p["id"] for p in await paged(gw.client, "/v1/publishes")}
        assert recent in listed and running in listed and old not in listed

        # Far in the future every finished publish is past it; the open one is never deleted.
        got = await _engine(gw).retention.sweep(now=time.time() + 1000 * DAY)
        assert (got.publish, got.delivery) == (1, 2)
        await _assert_gone(gw.client, recent)
        body = await publish_status(gw.client, running)
        assert body["status"] == "dispatching"
        assert [d["status"] for d in await gw.deliveries(running)] == ["retrying"]


async def test_the_background_task_deletes_what_passed_a_short_retention(
    database_url: str, lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """``retention.days`` of two seconds: the background sweep (every 0.2 s) deletes a finished
    publish on its own, counts it in ``pushgate_retention_deleted_rows_total`` and logs it."""
    caplog.set_level(logging.INFO, logger="pushgate.engine.retention")
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_RETENTION_DAYS=repr(2 / DAY),
        PUSHGATE_RETENTION_INTERVAL_SECONDS="0.2",
    )
    before = _deleted("publish"), _deleted("delivery")
    async with running_gateway(settings) as gw:
        await _device(gw.client, "b")
        pub = await _done(gw, "b")
        assert len(await gw.deliveries(pub)) == 1

        async def gone() -> bool:
            return (await gw.client.get(f"/v1/publishes/{pub}")).status_code == 404

        await wait_for(gone, 30, f"publish {pub} to be deleted by the background sweep", interval=0.2)
        await _assert_gone(gw.client, pub)
    assert _deleted("publish") - before[0] >= 1
    assert _deleted("delivery") - before[1] >= 1
    assert any(
        "retention deleted 1 publish(es), 1 delivery record(s)" in r.getMessage() for r in caplog.records
    )


async def test_dead_letters_go_with_their_publish_unless_replayed(database_url: str, lab: Lab) -> None:
    """A dead letter is deleted with its publish once the publish is past retention. Replaying
    reopens the publish: while the replay runs nothing of it is deleted, and when it closes again
    its retention starts over from then, for the whole publish (records and any dead letters
    the replay left)."""
    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_RETENTION_DAYS="1", PUSHGATE_RETRY_MAX_ATTEMPTS="1"
    )
    async with running_gateway(settings) as gw:
        devices = [await _device(gw.client, ch) for ch in ("x", "x", "y")]
        lab.fault(provider="fcm", tokens=[d["token"] for d in devices], error="503")
        dropped, replayed = await _done(gw, "x"), await _done(gw, "y")
        dead = (await gw.client.get("/v1/dead-letters", params={"limit": 100})).json()["items"]
        assert sorted(d["publish_id"] for d in dead) == sorted([dropped, dropped, replayed])
        cutoff = await _moment()
        lab.reset()
        r = await gw.client.post("/v1/dead-letters/replay", json={"filter": {"publish_id": replayed}})
        assert r.status_code == 200 and r.json()["replayed"] == 1, r.text
        assert (await gw.wait_done(replayed))["counts"]["sent"] == 1

        got = await _engine(gw).retention.sweep(now=cutoff + DAY)
        assert (got.publish, got.dead_letter, got.delivery) == (1, 2, 0)
        await _assert_gone(gw.client, dropped)
        assert (await gw.client.get("/v1/dead-letters", params={"publish_id": dropped})).json()["items"] == []
        assert [d["status"] for d in await gw.deliveries(replayed)] == ["sent"]

        got = await _engine(gw).retention.sweep(now=time.time() + DAY + 1)
        assert (got.publish, got.delivery) == (1, 1)
        await _assert_gone(gw.client, replayed)


async def test_an_apps_own_retention_replaces_the_global_one(
    database_url: str, lab: Lab, tmp_path: pathlib.Path
) -> None:
    """``[apps.<name>.retention] days`` is the app's own period; other apps keep ``[retention]``,
    and ``days = 0`` keeps an app's publishes for ever."""
    lab.reset()
    custom = Lab(url=lab.url, creds_dir=tmp_path)
    custom.toml.write_text(
        lab.toml.read_text() + "\n[apps.brief.retention]\ndays = 0.5\n[apps.keep.retention]\ndays = 0\n"
    )
    settings = gateway_settings(database_url, custom, PUSHGATE_RETENTION_DAYS="1")
    async with running_gateway(settings) as gw:
        await _device(gw.client, "d")
        pubs = {"default": await _done(gw, "d")}
        keys = {"default": gw.key}
        for name in ("brief", "keep"):
            _, keys[name] = await gw.app.state.services.apps.create(name)
            async with gw.as_app(keys[name]) as c:
                # No credentials in these apps: the raw token's record fails (no_credentials),
                # and the publish is finished all the same.
                pubs[name] = await publish(
                    c, recipients=[{"type": "token", "provider": "fcm", "token": fcm_token()}]
                )
                assert (await wait_final(c, pubs[name]))["status"] == "failed"
        cutoff = await _moment()
        retention = _engine(gw).retention

        async def status(app: str) -> int:
            async with gw.as_app(keys[app]) as c:
                return (await c.get(f"/v1/publishes/{pubs[app]}")).status_code

        got = await retention.sweep(now=cutoff + 0.75 * DAY)  # past brief's half day only
        assert (got.publish, got.delivery) == (1, 1)
        assert [await status(app) for app in ("default", "brief", "keep")] == [200, 404, 200]

        got = await retention.sweep(now=cutoff + 1000 * DAY)  # past the global day too
        assert (got.publish, got.delivery) == (1, 1)
        assert [await status(app) for app in ("default", "brief", "keep")] == [404, 404, 200]


# ---- a large delete while publishes keep flowing ---------------------------------------------

SEEDED = 3000
BATCH = 100


async def _seed_old(gw: Gateway, n: int, closed_at: float) -> None:
    """``n`` completed publishes of the default app, two delivery records and a counter row
    each, closed at ``closed_at``: the backlog a gateway upgraded to retention starts with."""
    app = await gw.app.state.services.apps.get_by_name("default")
    ids = [f"pub_seed{i:06d}" for i in range(n)]
    request = json.dumps({"recipients": [], "notification": {"title": "old"}})
    async with _engine(gw).db.write() as conn:
        await conn.execute(
            sa.insert(publishes),
            [
                {
                    "id": pid,
                    "app_id": app.id,
                    "status": "completed",
                    "request": request,
                    "planning_done": True,
                    "created_at": closed_at - 1,
                    "started_at": closed_at - 1,
                    "completed_at": closed_at,
                }
                for pid in ids
            ],
        )
        await conn.execute(
            sa.insert(publish_stats),
            [{"publish_id": pid, "provider": "fcm", "planned": 2, "sent": 2} for pid in ids],
        )
        await conn.execute(
            sa.insert(deliveries),
            [
                {
                    "publish_id": pid,
                    "recipient_id": f"tok_{pid}_{k}",
                    "provider": "fcm",
                    "status": "sent",
                    "attempts": 1,
                    "updated_at": closed_at,
                }
                for pid in ids
                for k in range(2)
            ],
        )


class _Events(logging.Handler):
    """The retention batches as they are logged, in one list with the test's own events."""

    def __init__(self, events: list[tuple[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("retention batch"):
            self.events.append(("batch", record.args))


@contextmanager
def _batches_into(events: list[tuple[str, Any]]) -> Iterator[None]:
    logger = logging.getLogger("pushgate.engine.retention")
    handler, level = _Events(events), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_large_delete_runs_in_batches_while_publishes_keep_flowing(
    database_url: str, lab: Lab
) -> None:
    """3,000 publishes (6,000 records) past retention are deleted 100 rows a transaction by the
    background task; publishes made meanwhile are admitted between its batches, complete, and
    are not deleted."""
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_RETENTION_DAYS="1",
        PUSHGATE_RETENTION_INTERVAL_SECONDS="0.2",
        PUSHGATE_RETENTION_BATCH_SIZE=str(BATCH),
    )
    events: list[tuple[str, Any]] = []
    before = _deleted("publish")
    async with running_gateway(settings) as gw:
        await _device(gw.client, "live")
        with _batches_into(events):
            await _seed_old(gw, SEEDED, closed_at=time.time() - 2 * DAY)
            made: list[str] = []

            async def keep_publishing() -> None:
                while _deleted("publish") - before < SEEDED:
                    pub = await _publish(gw.client, "live")
                    events.append(("admitted", pub))
                    made.append(pub)

            await asyncio.wait_for(keep_publishing(), 90)
        for pub in made:
            assert (await gw.wait_done(pub))["counts"]["sent"] == 1
        assert (await publish_status(gw.client, made[0]))["status"] == "completed"

    kinds = [kind for kind, _ in events]
    batches = kinds.count("batch")
    # 6,000 records and 3,000 publishes at most 100 rows of each a transaction: at least 60.
    assert batches >= 2 * SEEDED // BATCH, batches
    first, last = kinds.index("batch"), len(kinds) - 1 - kinds[::-1].index("batch")
    during = [e for e in events[first:last] if e[0] == "admitted"]
    assert during, f"no publish was admitted between the first and the last of {batches} batches"
    for _, args in events:
        if isinstance(args, tuple):
            rows = args[-1]
            assert rows["publish"] <= BATCH and rows["delivery"] <= BATCH, rows


async def test_two_processes_sweeping_at_once_delete_each_row_once(gateway: Gateway) -> None:
    """Every worker process sweeps (``serve`` and each ``pushgate worker``): two sweepers on
    their own connections, at once, delete the backlog exactly once between them, without an
    error (on PostgreSQL their batches skip each other's publishes)."""
    await _seed_old(gateway, 500, closed_at=time.time() - 30 * DAY)
    settings = msgspec.structs.replace(
        gateway.settings, retention=msgspec.structs.replace(gateway.settings.retention, batch_size=20)
    )
    dbs = [Database(settings.database_url) for _ in range(2)]
    try:
        got = await asyncio.gather(*(Retention(settings, db).sweep() for db in dbs))
    finally:
        for db in dbs:
            await db.dispose()
    assert sum(g.publish for g in got) == 500
    assert sum(g.delivery for g in got) == 1000
    assert sum(g.publish_stats for g in got) == 500
    async with _engine(gateway).db.read() as conn:
        for table in (publishes, deliveries, publish_stats):
            assert (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one() == 0
