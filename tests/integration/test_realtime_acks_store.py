"""Sessions' acks in the database (``RealtimeDeliveries.record_acks``): counted once per
session, whatever the batches, and never in a lock cycle with another node's acks."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from support.api import fcm_token, publish, register
from support.gateway import Gateway
from support.wait import wait_for

from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.realtime_deliveries import Ack, RealtimeDeliveries
from pushgate.store.schema import publish_stats, publishes, realtime_acks


async def _publish_with_sessions(gateway: Gateway, sids: list[str]) -> tuple[RealtimeDeliveries, str, str]:
    phone = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    pid = await publish(gateway.client, recipients=[{"type": "device", "device_id": phone["id"]}])
    await gateway.wait_done(pid)
    services = gateway.app.state.services
    store = RealtimeDeliveries(services.db, services.publishes)
    async with services.db.write() as conn:
        app_id = (await conn.execute(sa.select(publishes.c.app_id).where(publishes.c.id == pid))).scalar_one()
        await store.record_sessions(conn, pid, sids, time.time())
    return store, app_id, pid


async def _delivered(store: RealtimeDeliveries, pid: str) -> int:
    async with store.db.read() as conn:
        q = sa.select(publish_stats.c.delivered).where(
            publish_stats.c.publish_id == pid, publish_stats.c.provider == "realtime"
        )
        return int((await conn.execute(q)).scalar_one())


async def test_a_session_acking_twice_counts_once(gateway: Gateway) -> None:
    store, app_id, pid = await _publish_with_sessions(gateway, ["s1", "s2"])
    now = time.time()
    first = await store.record_acks([Ack(app_id, pid, "s1", "u1", now), Ack(app_id, pid, "s1", "u1", now)])
    other_app = Ack("app_other", pid, "s2", "u2", now)
    again = await store.record_acks([Ack(app_id, pid, "s1", "u1", now), other_app])
    assert [r.result.value for r in first] == ["recorded", "duplicate"]
    assert [r.result.value for r in again] == ["duplicate", "not_found"]
    assert await _delivered(store, pid) == 1


async def test_two_nodes_acks_of_the_same_users_do_not_deadlock(gateway: Gateway, database_url: str) -> None:
    """PostgreSQL: a user's ack is a row of ``realtime_acks``; a node inserting its batch's users
    in the order their acks came (b, a) waited on another node's a while holding b, which the
    other node (a, then b) wanted next: a lock cycle, one side aborted and retried."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: no lock cycle")
    store, app_id, pid = await _publish_with_sessions(gateway, ["sa", "sb"])
    db = store.db

    async def waiting_on_a_lock() -> int:
        async with db.read() as conn:
            q = sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            return int((await conn.execute(q)).scalar_one())

    now = time.time()
    stmt = insert_ignoring_conflicts(db.dialect, realtime_acks, ("publish_id", "user"))
    async with db.write() as conn:  # the other node's batch: users a, then b
        await conn.execute(stmt, [{"publish_id": pid, "user": "a", "acked_at": now}])
        acks = [Ack(app_id, pid, "sb", "b", now), Ack(app_id, pid, "sa", "a", now)]
        task = asyncio.create_task(store.record_acks(acks))
        await wait_for(waiting_on_a_lock, 10, "this node's acks waiting for the other's user a")
        await conn.execute(stmt, [{"publish_id": pid, "user": "b", "acked_at": now}])
    done = await asyncio.wait_for(task, 10)
    assert [r.result.value for r in done] == ["recorded", "recorded"]
    assert await _delivered(store, pid) == 2
