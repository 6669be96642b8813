"""The durable queue and the engine's promises: leases, re-runs, expiry, paging, credentials."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
import sqlalchemy as sa
from support.api import fcm_token, publish, publish_status, register, wait_final
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.domain.jobs import DispatchPayload, PlanPayload
from pushgate.store.db import Database
from pushgate.store.queue import JobQueue, NewJob
from pushgate.store.schema import jobs, publishes


async def _db(url: str) -> Database:
    db = Database(url)
    await db.migrate()
    return db


async def test_expired_lease_is_claimed_again(database_url: str) -> None:
    db = await _db(database_url)
    try:
        q = JobQueue(db)
        async with db.write() as conn:
            await JobQueue.enqueue(conn, [NewJob("app_x", "pub_x", PlanPayload())])
        [first] = await q.claim("worker-a", 10, lease_seconds=0.3)
        assert first.claims == 1
        assert await q.claim("worker-b", 10, lease_seconds=30) == []  # leased
        await asyncio.sleep(0.4)
        [again] = await q.claim("worker-b", 10, lease_seconds=30)  # worker-a "died"
        assert again.id == first.id and again.claims == 2
        async with db.read() as conn:
            owner = (await conn.execute(sa.select(jobs.c.lease_owner))).scalar()
        assert owner == "worker-b"
        await q.release("worker-b")
        [third] = await q.claim("worker-c", 10, lease_seconds=30)  # released at once on shutdown
        assert third.id == first.id
    finally:
        await db.dispose()


async def test_concurrent_claims_never_share_a_job(database_url: str) -> None:
    db = await _db(database_url)
    try:
        q = JobQueue(db)
        async with db.write() as conn:
            for n in range(200):
                await JobQueue.enqueue_dispatch(conn, "a", "p", "fcm", [[f"dev_{n}", "t"]])

        async def claimer(name: str) -> list[int]:
            got: list[int] = []
            while True:
                batch = await q.claim(name, 7, lease_seconds=60)
                if not batch:
                    return got
                got += [j.id for j in batch]

        results = await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
        all_ids = [i for r in results for i in r]
        assert len(all_ids) == 200
        assert len(set(all_ids)) == 200
    finally:
        await db.dispose()


async def test_enqueue_dispatch_cuts_batches_and_keeps_each_run_time(database_url: str) -> None:
    db = await _db(database_url)
    try:
        now = time.time()
        async with db.write() as conn:
            await JobQueue.enqueue_dispatch(
                conn, "a", "p", "fcm", [[f"dev_{n}", "t"] for n in range(5)], batch_size=2, replay=True
            )
            retries = {now - 2: [["dev_x", "t"]], now + 60: [["dev_y", "t", "sandbox"]]}
            await JobQueue.enqueue_dispatch(conn, "a", "p", "apns", retries, attempt=3)
        claimed = [j.typed(DispatchPayload) for j in await JobQueue(db).claim("w", 10, 60)]
        fcm = sorted((j.payload for j in claimed if j.payload.provider == "fcm"), key=lambda p: p.targets)
        assert [[t[0] for t in p.targets] for p in fcm] == [["dev_0", "dev_1"], ["dev_2", "dev_3"], ["dev_4"]]
        assert all(p.attempt == 1 and p.replay and p.was_retrying for p in fcm)
        [apns] = [j.payload for j in claimed if j.payload.provider == "apns"]  # the other is not due
        assert (apns.targets, apns.attempt, apns.replay) == ([["dev_x", "t"]], 3, False)
        async with db.read() as conn:
            later = (await conn.execute(sa.select(jobs.c.run_at).where(jobs.c.lease_until.is_(None)))).all()
        assert [r.run_at for r in later] == [pytest.approx(now + 60)]
    finally:
        await db.dispose()


async def test_rerun_batch_skips_recipients_with_final_outcome(gateway: Gateway, lab: Lab) -> None:
    """A re-claimed batch whose recipients were already recorded final sends nothing again.

    The publish is put back to ``dispatching`` (as it is while any of its jobs exists), so the
    dispatcher gets past its closed-publish check and the re-run filter is what stops the resend.
    """
    from pushgate.store.schema import publishes

    devs = [
        await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["c"])
        for _ in range(3)
    ]
    pub_id = await publish(gateway.client, recipients=[{"type": "channel", "channel": "c"}])
    await gateway.wait_done(pub_id)
    assert lab.ledger("fcm")["total"] == 3
    # A worker died after recording its outcomes but before deleting its job: the job comes back
    # with claims=1 and no progress, and its publish is still open.
    db: Database = gateway.app.state.services.db
    async with db.write() as conn:
        await conn.execute(
            sa.update(publishes)
            .where(publishes.c.id == pub_id)
            .values(status="dispatching", completed_at=None)
        )
        await conn.execute(
            sa.insert(jobs).values(
                kind="dispatch",
                app_id=(await gateway.app.state.services.apps.get_by_name("default")).id,
                publish_id=pub_id,
                payload=json.dumps(
                    {"provider": "fcm", "attempt": 1, "targets": [[d["id"], d["token"]] for d in devs]}
                ),
                run_at=time.time(),
                claims=1,
                created_at=time.time(),
            )
        )
    gateway.app.state.services.engine.notify()

    async def no_jobs() -> bool:
        async with db.read() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar() == 0

    await wait_for(no_jobs, 5, "the re-run batch to finish")
    status = await gateway.wait_done(pub_id)
    assert lab.ledger("fcm")["total"] == 3  # nothing sent twice
    assert status["status"] == "completed"
    assert status["counts"]["sent"] == 3 and status["counts"]["planned"] == 3


async def test_planner_pages_and_batches_without_duplicates(database_url: str, lab: Lab) -> None:
    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_ENGINE_PLAN_PAGE_SIZE="10", PUSHGATE_ENGINE_BATCH_SIZE="7"
    )
    async with running_gateway(settings) as gw:
        devs = [
            await register(
                gw, provider="fcm", token=fcm_token(), platform="android", channels=["big"], user="fan"
            )
            for _ in range(35)
        ]
        pub_id = await publish(
            gw.client, recipients=[{"type": "channel", "channel": "big"}, {"type": "user", "user": "fan"}]
        )
        status = await gw.wait_done(pub_id)
        assert status["counts"]["planned"] == 35 and status["counts"]["sent"] == 35
        got = Counter(i["token"] for i in lab.ledger("fcm")["items"])
        assert got == Counter({d["token"]: 1 for d in devs})


async def test_expire_at_stops_retries(gateway: Gateway, lab: Lab) -> None:
    dev = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    lab.fault(provider="fcm", tokens=[dev["token"]], error="503", retry_after=30)
    expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    pub_id = await publish(
        gateway.client, recipients=[{"type": "device", "device_id": dev["id"]}], expire_at=expire
    )
    status = await gateway.wait_done(pub_id, within=10)
    assert status["status"] == "expired"
    assert status["counts"] == {
        "planned": 1,
        "sent": 0,
        "failed": 0,
        "invalid_token": 0,
        "retrying": 0,
        "expired": 1,
        "cancelled": 0,
        "suppressed": 0,
        "skipped": 0,
        "held": 0,
        "dry_run": 0,
        # Receipts (docs/receipts.md): none reported.
        "delivered": 0,
        "opened": 0,
        "dismissed": 0,
        "clicked": 0,
    }
    [d] = await gateway.deliveries(pub_id)
    assert d["status"] == "expired" and d["attempts"] == 1
    assert lab.ledger("fcm")["total"] == 0


async def test_publish_fails_without_credentials(gateway: Gateway, lab: Lab) -> None:
    _, key = await gateway.app.state.services.apps.create("no-creds")
    async with gateway.as_app(key) as c:
        r = await c.post("/v1/devices", json={"provider": "fcm", "token": fcm_token(), "platform": "android"})
        dev = r.json()["device"]
        pub_id = await publish(c, recipients=[{"type": "device", "device_id": dev["id"]}])
        body = await wait_final(c, pub_id, 5)
        assert body["status"] == "failed"
        assert body["error"]["code"] == "no_credentials"
        [d] = (await c.get(f"/v1/publishes/{pub_id}/deliveries")).json()["items"]
        assert d["status"] == "failed" and d["error_code"] == "no_credentials"
        device = (await c.get(f"/v1/devices/{dev['id']}")).json()["device"]
        assert device["status"] == "active"
    assert lab.ledger("fcm")["total"] == 0


async def test_job_that_keeps_crashing_is_failed_not_retried_forever(gateway: Gateway, lab: Lab) -> None:
    from pushgate.engine.worker import MAX_CLAIMS

    dev = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    lab.fault(provider="fcm", tokens=[dev["token"]], error="503", retry_after=30)
    pub_id = await publish(gateway.client, recipients=[{"type": "device", "device_id": dev["id"]}])
    db: Database = gateway.app.state.services.db

    async def retrying() -> bool:
        return bool((await publish_status(gateway.client, pub_id))["counts"]["retrying"] == 1)

    await wait_for(retrying, 5, "the delivery to be retrying")
    # Pretend the retry job crashed its worker MAX_CLAIMS times already.
    async with db.write() as conn:
        await conn.execute(sa.update(jobs).values(claims=MAX_CLAIMS, run_at=time.time(), lease_until=None))
    gateway.app.state.services.engine.notify()
    status = await gateway.wait_done(pub_id)
    assert status["counts"]["failed"] == 1 and status["counts"]["retrying"] == 0
    [d] = await gateway.deliveries(pub_id)
    assert d["status"] == "failed" and d["error_code"] == "internal_error"


async def test_failing_a_publish_fails_its_open_deliveries_and_drops_its_jobs(
    gateway: Gateway, lab: Lab
) -> None:
    """A plan job given up (MAX_CLAIMS) fails the publish: the batches it had already queued
    must not leave their deliveries pending forever."""
    devs = [await register(gateway, provider="fcm", token=fcm_token(), platform="android") for _ in range(3)]
    lab.fault(provider="fcm", tokens=[devs[0]["token"]], error="503", retry_after=30)
    pub_id = await publish(
        gateway.client, recipients=[{"type": "device", "device_id": d["id"]} for d in devs]
    )

    async def two_sent_one_retrying() -> bool:
        counts = (await publish_status(gateway.client, pub_id))["counts"]
        return bool(counts["retrying"] == 1 and counts["sent"] == 2)

    await wait_for(two_sent_one_retrying, 10, "two deliveries sent and one retrying")
    services = gateway.app.state.services
    await services.publishes.fail(pub_id, "internal_error", "planning failed repeatedly")
    status = (await gateway.client.get(f"/v1/publishes/{pub_id}")).json()
    assert status["status"] == "failed"
    assert status["counts"]["failed"] == 1 and status["counts"]["retrying"] == 0
    assert status["counts"]["sent"] == 2
    failed = [d for d in await gateway.deliveries(pub_id) if d["status"] == "failed"]
    assert [d["device_id"] for d in failed] == [devs[0]["id"]]
    assert failed[0]["error_code"] == "internal_error"
    db: Database = services.db
    async with db.read() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar()
    assert left == 0


async def test_sweep_closes_a_publish_whose_completion_check_was_lost(database_url: str, lab: Lab) -> None:
    from pushgate.store.schema import publishes

    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_ENGINE_SWEEP_INTERVAL="0.2")
    async with running_gateway(settings) as gw:
        dev = await register(gw, provider="fcm", token=fcm_token(), platform="android")
        pub_id = await publish(gw.client, recipients=[{"type": "device", "device_id": dev["id"]}])
        await gw.wait_done(pub_id)
        # The process "died" between the last outcome commit and the completion check.
        db: Database = gw.app.state.services.db
        async with db.write() as conn:
            await conn.execute(
                sa.update(publishes)
                .where(publishes.c.id == pub_id)
                .values(status="dispatching", completed_at=None)
            )
        status = await gw.wait_done(pub_id, within=10)
        assert status["status"] == "completed" and status["completed_at"]


async def test_rejected_old_token_does_not_invalidate_a_reregistered_device(
    gateway: Gateway, lab: Lab
) -> None:
    """Token rotation: the device got a fresh token after planning; the old token's rejection
    must not switch it off."""
    from pushgate.store.devices import DeviceStore

    old = fcm_token()
    dev = await register(gateway, provider="fcm", token=old, platform="android")
    new = fcm_token()
    r = await gateway.client.post(
        "/v1/devices", json={"id": dev["id"], "provider": "fcm", "token": new, "platform": "android"}
    )
    assert r.json()["device"]["token"] == new
    db: Database = gateway.app.state.services.db
    async with db.write() as conn:
        await DeviceStore.invalidate(conn, {dev["id"]: ("fcm: UNREGISTERED", old)}, time.time())
    assert (await gateway.client.get(f"/v1/devices/{dev['id']}")).json()["device"]["status"] == "active"
    async with db.write() as conn:
        await DeviceStore.invalidate(conn, {dev["id"]: ("fcm: UNREGISTERED", new)}, time.time())
    assert (await gateway.client.get(f"/v1/devices/{dev['id']}")).json()["device"]["status"] == "invalid"


async def test_a_plan_page_of_a_lapsed_claim_is_rolled_back(database_url: str) -> None:
    """Two claims of one plan job (the first one's lease lapsed): the stale claim's page must
    write nothing, so the recipients are planned (and counted) exactly once."""
    from pushgate.domain.ids import new_id
    from pushgate.engine.planner import PlanContext, Planner
    from pushgate.store.apps import AppStore
    from pushgate.store.devices import token_hash
    from pushgate.store.publishes import PublishStore
    from pushgate.store.queue import JobQueue, LeaseLost
    from pushgate.store.schema import deliveries, device_channels, devices

    db = Database(database_url)
    await db.migrate()
    try:
        app, _ = await AppStore(db).create("planner-race")
        now = time.time()
        rows = []
        for _ in range(30):
            token = fcm_token()
            rows.append(
                {
                    "id": new_id("dev"), "app_id": app.id, "provider": "fcm", "token": token,
                    "token_hash": token_hash("fcm", token), "platform": "android", "status": "active",
                    "created_at": now, "updated_at": now, "last_seen_at": now,
                }
            )  # fmt: skip
        async with db.write() as conn:
            await conn.execute(sa.insert(devices), rows)
            await conn.execute(
                sa.insert(device_channels),
                [{"app_id": app.id, "channel": "c", "device_id": r["id"]} for r in rows],
            )
        publishes = PublishStore(db)
        request = {"recipients": [{"type": "channel", "channel": "c"}], "notification": {"title": "t"}}
        pub, _ = await publishes.admit(
            app.id, request, idempotency_key=None, expire_at=None, window_seconds=60
        )
        queue = JobQueue(db)
        [stale] = await queue.claim("worker-a", 1, 60)
        async with db.write() as conn:  # worker-a's lease lapses ...
            await conn.execute(sa.update(jobs).values(lease_until=time.time() - 1))
        [fresh] = await queue.claim("worker-b", 1, 60)  # ... and worker-b claims the job
        assert fresh.id == stale.id and fresh.claims == stale.claims + 1
        planner = Planner(db, publishes, lambda: None)
        ctx = PlanContext(
            app_name=app.name, configured={"fcm"}, batch_size=10, page_size=10, lease_seconds=60
        )
        with pytest.raises(LeaseLost):
            await planner.run(stale.typed(PlanPayload), pub, ctx)
        async with db.read() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(deliveries))).scalar() == 0
        await planner.run(fresh.typed(PlanPayload), pub, ctx)
        status = await publishes.get(app.id, pub.id)
        assert status is not None and status.counts["planned"] == 30
        async with db.read() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(deliveries))).scalar() == 30
    finally:
        await db.dispose()


async def test_jobs_that_cannot_run_are_dropped(gateway: Gateway, lab: Lab) -> None:
    """An unknown kind or a payload that does not decode would fail on every claim: the worker
    drops the row (with an error log) instead of claiming it forever, and fails its publish, which
    would otherwise stay open for ever."""
    db: Database = gateway.app.state.services.db
    app = await gateway.app.state.services.apps.get_by_name("default")
    now = time.time()
    async with db.write() as conn:
        await conn.execute(
            sa.insert(publishes),
            {
                "id": "pub_broken_plan",
                "app_id": app.id,
                "status": "accepted",
                "request": "{}",
                "created_at": now,
            },
        )
        row = {"app_id": "a", "publish_id": "p", "run_at": now, "created_at": now}
        await conn.execute(
            sa.insert(jobs),
            [
                {**row, "kind": "sweep", "payload": "{}"},
                {**row, "kind": "dispatch", "payload": '{"attempt":1}'},
                {**row, "app_id": app.id, "publish_id": "pub_broken_plan", "kind": "plan", "payload": "[1"},
            ],
        )
    gateway.app.state.services.engine.notify()

    async def no_jobs() -> bool:
        async with db.read() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar() == 0

    await wait_for(no_jobs, 5, "the jobs that cannot run to be dropped")
    broken = await publish_status(gateway.client, "pub_broken_plan")
    assert broken["status"] == "failed" and broken["error"]["code"] == "internal_error", broken
    assert "plan job" in broken["error"]["message"]
