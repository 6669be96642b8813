"""Small publishes planned inside admission's transaction (issue 10, ``engine.plan_at_admission``).

A publish to a few devices, users or tokens gets its delivery records, counters and dispatch
jobs in the commit that accepts it, and no plan job. The store tests hold it to the planner:
the same request admitted with and without planning at admission must leave the same records,
counters, status and dispatch targets. The gateway tests count what the lab received.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import fcm_token, gather_limited, publish, publish_status, register
from support.gateway import Gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.domain.ids import new_id
from pushgate.domain.jobs import PlanPayload
from pushgate.engine.planner import PlanContext, Planner
from pushgate.store.apps import AppStore
from pushgate.store.db import Database
from pushgate.store.devices import token_hash
from pushgate.store.publishes import InlinePlan, Publish, PublishStore
from pushgate.store.queue import JobQueue
from pushgate.store.schema import deliveries, device_channels, devices, jobs


async def _devices(db: Database, app_id: str, specs: list[tuple[str, str | None]]) -> list[str]:
    """Insert devices ``(provider, user)``; returns their ids in order."""
    now = time.time()
    rows = []
    for provider, user in specs:
        token = fcm_token()
        rows.append(
            {
                "id": new_id("dev"), "app_id": app_id, "provider": provider, "token": token,
                "token_hash": token_hash(provider, token), "platform": "android", "status": "active",
                "user": user, "created_at": now, "updated_at": now, "last_seen_at": now,
            }
        )  # fmt: skip
    async with db.write() as conn:
        await conn.execute(sa.insert(devices), rows)
    return [str(r["id"]) for r in rows]


async def _outcome(db: Database, store: PublishStore, app_id: str, publish_id: str) -> dict[str, Any]:
    """What planning left: status, counters, records and dispatch targets (ids replaced)."""
    pub = await store.get(app_id, publish_id)
    assert pub is not None
    async with db.read() as conn:
        records = (
            await conn.execute(
                sa.select(
                    deliveries.c.recipient_id,
                    deliveries.c.provider,
                    deliveries.c.status,
                    deliveries.c.error_code,
                ).where(deliveries.c.publish_id == publish_id)
            )
        ).all()
        queued = (
            await conn.execute(sa.select(jobs.c.kind, jobs.c.payload).where(jobs.c.publish_id == publish_id))
        ).all()
    targets = sorted(
        (json.loads(p)["provider"], t[0])
        for kind, p in queued
        if kind == "dispatch"
        for t in json.loads(p)["targets"]
    )
    return {
        "status": pub.status,
        "planning_done": pub.planning_done,
        "counts": pub.counts,
        "by_provider": pub.by_provider,
        "records": sorted(tuple(r) for r in records),
        "targets": targets,
        "kinds": sorted(kind for kind, _ in queued),
    }


async def _plan_both_ways(
    db: Database,
    request: dict[str, Any],
    *,
    max_rows: int = 20,
    expire_at: float | None = None,
    seen_after: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Publish]:
    """Admit ``request`` planned at admission, and again through the planner; both outcomes."""
    app = await AppStore(db).get_by_name("default") or (await AppStore(db).create("default"))[0]
    store = PublishStore(db)
    plan = InlinePlan(
        app_name=app.name,
        configured=frozenset({"fcm"}),
        batch_size=2,
        max_rows=max_rows,
        seen_after=seen_after,
    )
    inline, created = await store.admit(
        app.id, request, idempotency_key=None, expire_at=expire_at, window_seconds=60, plan=plan
    )
    assert created
    queued, _ = await store.admit(
        app.id, request, idempotency_key=None, expire_at=expire_at, window_seconds=60
    )
    # (The inline publish's dispatch jobs are claimed too: only kinds and payloads are compared.)
    [job] = [j for j in await JobQueue(db).claim("planner", 100, 60) if j.kind == "plan"]
    assert job.publish_id == queued.id
    ctx = PlanContext(
        app_name=app.name,
        configured={"fcm"},
        batch_size=2,
        page_size=10,
        lease_seconds=60,
        seen_after=seen_after,
    )
    await Planner(db, store, lambda: None).run(job.typed(PlanPayload), queued, ctx)
    return (
        await _outcome(db, store, app.id, inline.id),
        await _outcome(db, store, app.id, queued.id),
        inline,
    )


async def test_a_small_publish_is_planned_at_admission_exactly_as_the_planner_would(db: Database) -> None:
    """Users, device ids (one of them also reached through its user), a device of a provider
    without credentials and a raw token: the same records, counters and dispatch targets as the
    planner's, written in admission's commit (the publish is dispatching, no plan job)."""
    app, _ = await AppStore(db).create("default")
    alice = await _devices(db, app.id, [("fcm", "alice"), ("fcm", "alice"), ("fcm", "alice")])
    [apns] = await _devices(db, app.id, [("apns", None)])
    [bob] = await _devices(db, app.id, [("fcm", "bob")])
    request = {
        "recipients": [
            {"type": "user", "user": "alice"},
            {"type": "device", "device_id": alice[0]},
            {"type": "device", "device_id": apns},
            {"type": "device", "device_id": bob},
            {"type": "token", "provider": "fcm", "token": "raw-token-1", "token_key": "raw-token-1"},
            {"type": "user", "user": "nobody"},
        ],
        "notification": {"title": "t"},
    }
    inline, planned, pub = await _plan_both_ways(db, request)
    assert pub.status == "dispatching" and pub.planning_done
    assert inline == {**planned, "kinds": inline["kinds"]}
    assert inline["kinds"] == ["dispatch", "dispatch", "dispatch"]  # 5 fcm targets, batches of 2
    assert inline["counts"]["planned"] == 6 and inline["counts"]["failed"] == 1
    assert len(inline["targets"]) == 5 and len(inline["records"]) == 6


@pytest.mark.parametrize(
    ("recipients", "status"),
    [
        ([{"type": "user", "user": "nobody"}], "completed"),
        ([{"type": "device", "device_id": "APNS"}], "failed"),
    ],
)
async def test_a_small_publish_with_nothing_to_send_ends_at_admission(
    db: Database, recipients: list[dict[str, Any]], status: str
) -> None:
    """Nobody to reach: completed at once; only providers without credentials: failed
    ``no_credentials`` at once; as the planner ends them."""
    app, _ = await AppStore(db).create("default")
    [apns] = await _devices(db, app.id, [("apns", None)])
    recipients = [{**r, "device_id": apns} if r.get("device_id") == "APNS" else r for r in recipients]
    inline, planned, pub = await _plan_both_ways(
        db, {"recipients": recipients, "notification": {"title": "t"}}
    )
    assert inline == planned
    assert inline["status"] == status == pub.status and inline["kinds"] == []
    if status == "failed":
        stored = await PublishStore(db).get(app.id, pub.id)
        assert stored is not None and stored.error_code == "no_credentials"


async def test_stale_devices_are_skipped_at_admission_as_in_the_planner(db: Database) -> None:
    """``devices.max_inactive_days``: a device not seen since the cutoff is reached through
    neither its user nor its id, as in the planner."""
    app, _ = await AppStore(db).create("default")
    ids = await _devices(db, app.id, [("fcm", "dave"), ("fcm", "dave"), ("fcm", None)])
    async with db.write() as conn:
        await conn.execute(
            sa.update(devices)
            .where(devices.c.id.in_([ids[0], ids[2]]))
            .values(last_seen_at=time.time() - 86400 * 40)
        )
    request = {
        "recipients": [{"type": "user", "user": "dave"}, {"type": "device", "device_id": ids[2]}],
        "notification": {"title": "t"},
    }
    inline, planned, _ = await _plan_both_ways(db, request, seen_after=time.time() - 86400 * 30)
    assert inline == {**planned, "kinds": inline["kinds"]}
    assert [r[0] for r in inline["records"]] == [ids[1]]


async def test_an_expired_small_publish_expires_at_admission_as_in_the_planner(db: Database) -> None:
    """Expired by the time it is planned (the API refuses a past ``expire_at``; a slow commit
    can still pass it): every record ``expired``, the publish closed ``expired``, nothing sent."""
    app, _ = await AppStore(db).create("default")
    await _devices(db, app.id, [("fcm", "late"), ("fcm", "late")])
    request = {"recipients": [{"type": "user", "user": "late"}], "notification": {"title": "t"}}
    inline, planned, pub = await _plan_both_ways(db, request, expire_at=time.time() - 1)
    assert inline == planned
    assert (pub.status, inline["status"], inline["counts"]["expired"], inline["kinds"]) == (
        "expired",
        "expired",
        2,
        [],
    )


async def test_a_small_publish_cancelled_right_after_admission_sends_nothing(db: Database) -> None:
    """Its records and dispatch jobs exist from the start: a cancel cancels every record and
    deletes the jobs, as for a publish the planner planned."""
    app, _ = await AppStore(db).create("default")
    await _devices(db, app.id, [("fcm", "carol")] * 3)
    store = PublishStore(db)
    plan = InlinePlan(app_name=app.name, configured=frozenset({"fcm"}), batch_size=500, max_rows=20)
    request = {"recipients": [{"type": "user", "user": "carol"}], "notification": {"title": "t"}}
    pub, _ = await store.admit(
        app.id, request, idempotency_key=None, expire_at=None, window_seconds=60, plan=plan
    )
    assert (await _outcome(db, store, app.id, pub.id))["kinds"] == ["dispatch"]
    cancelled, changed = await store.cancel(app.id, pub.id)
    assert changed and cancelled is not None and cancelled.status == "cancelled"
    out = await _outcome(db, store, app.id, pub.id)
    assert out["kinds"] == [] and out["counts"]["cancelled"] == out["counts"]["planned"] == 3
    assert {r[2] for r in out["records"]} == {"cancelled"}


async def test_a_publish_over_the_bound_goes_to_the_planner(db: Database) -> None:
    """A user or a channel with more devices than ``max_rows`` is left to the planner: the
    publish is accepted with its plan job and nothing else, then planned as always."""
    app, _ = await AppStore(db).create("default")
    crowd = await _devices(db, app.id, [("fcm", "crowd")] * 4)
    await _join(db, app.id, "c", crowd)
    store = PublishStore(db)
    plan = InlinePlan(app_name=app.name, configured=frozenset({"fcm"}), batch_size=2, max_rows=3)
    for recipient in ({"type": "user", "user": "crowd"}, {"type": "channel", "channel": "c"}):
        request = {"recipients": [recipient], "notification": {"title": "t"}}
        pub, _ = await store.admit(
            app.id, request, idempotency_key=None, expire_at=None, window_seconds=60, plan=plan
        )
        out = await _outcome(db, store, app.id, pub.id)
        assert (pub.status, out["status"], out["kinds"], out["records"]) == (
            "accepted",
            "accepted",
            ["plan"],
            [],
        ), recipient


async def _join(db: Database, app_id: str, channel: str, device_ids: list[str]) -> None:
    async with db.write() as conn:
        await conn.execute(
            sa.insert(device_channels),
            [{"app_id": app_id, "channel": channel, "device_id": d} for d in device_ids],
        )


async def test_a_small_channel_is_planned_at_admission_as_the_planner_would(db: Database) -> None:
    """A channel of a few devices (one stale, one removed, one also reached through its user):
    the planner's records, counters and targets, written in admission's commit."""
    app, _ = await AppStore(db).create("default")
    ids = await _devices(
        db, app.id, [("fcm", "erin"), ("fcm", None), ("fcm", None), ("fcm", None), ("apns", None)]
    )
    await _join(db, app.id, "small", ids)
    await _join(db, app.id, "other", [ids[1]])
    async with db.write() as conn:
        await conn.execute(
            sa.update(devices).where(devices.c.id == ids[2]).values(last_seen_at=time.time() - 86400 * 40)
        )
        await conn.execute(sa.update(devices).where(devices.c.id == ids[3]).values(status="removed"))
    request = {
        "recipients": [{"type": "channel", "channel": "small"}, {"type": "user", "user": "erin"}],
        "notification": {"title": "t"},
    }
    inline, planned, pub = await _plan_both_ways(db, request, seen_after=time.time() - 86400 * 30)
    assert pub.status == "dispatching" and pub.planning_done
    assert inline == {**planned, "kinds": inline["kinds"]}
    assert sorted(r[0] for r in inline["records"]) == sorted([ids[0], ids[1], ids[4]])
    assert inline["counts"]["planned"] == 3 and inline["counts"]["failed"] == 1  # apns: no credentials


async def test_a_publish_to_an_empty_channel_completes_at_admission(db: Database) -> None:
    """Nobody in the channel (or only a device of another app, or of another channel): the
    publish is completed in its own commit, as the planner would close it, with no job."""
    app, _ = await AppStore(db).create("default")
    other, _ = await AppStore(db).create("other")
    [theirs] = await _devices(db, other.id, [("fcm", None)])
    [ours] = await _devices(db, app.id, [("fcm", None)])
    await _join(db, other.id, "news", [theirs])
    await _join(db, app.id, "sports", [ours])
    request = {"recipients": [{"type": "channel", "channel": "news"}], "notification": {"title": "t"}}
    inline, planned, pub = await _plan_both_ways(db, request)
    assert inline == planned
    assert (pub.status, inline["kinds"], inline["records"]) == ("completed", [], [])


# ---- through the HTTP API, counted at the lab -----------------------------------------------------


async def test_single_user_and_device_publishes_complete_with_one_delivery_each(
    gateway: Gateway, lab: Lab
) -> None:
    """Publishes to one user (two devices) and to device ids (one repeated) complete with the
    right counts and one delivery record and one notification per device."""
    c = gateway.client
    a1 = await register(c, provider="fcm", token=fcm_token(), platform="android", user="u-single")
    a2 = await register(c, provider="fcm", token=fcm_token(), platform="android", user="u-single")
    b = await register(c, provider="fcm", token=fcm_token(), platform="android")
    by_user = await publish(c, recipients=[{"type": "user", "user": "u-single"}])
    by_ids = await publish(
        c,
        recipients=[
            {"type": "device", "device_id": b["id"]},
            {"type": "device", "device_id": a1["id"]},
            {"type": "device", "device_id": b["id"]},
        ],
    )
    for pid in (by_user, by_ids):
        done = await gateway.wait_done(pid)
        assert done["status"] == "completed", done
        assert done["counts"]["planned"] == done["counts"]["sent"] == 2, done
        assert len(await gateway.deliveries(pid)) == 2
    counts = Counter(item["token"] for item in lab.ledger("fcm")["items"])
    assert counts == {a1["token"]: 2, a2["token"]: 1, b["token"]: 1}


async def test_200_concurrent_single_user_publishes_notify_every_device_once(
    gateway: Gateway, lab: Lab
) -> None:
    """200 single-user publishes in flight together (admission groups them into shared commits):
    every device is notified exactly once and every publish completes with one sent."""
    c = gateway.client
    tokens = [fcm_token() for _ in range(200)]
    items = [
        {"provider": "fcm", "platform": "android", "token": t, "user": f"conc-{i}"}
        for i, t in enumerate(tokens)
    ]
    r = await c.post("/v1/devices/batch", json={"devices": items})
    assert r.status_code == 200 and r.json()["created"] == 200, r.text
    ids = await asyncio.gather(
        *(publish(c, recipients=[{"type": "user", "user": f"conc-{i}"}]) for i in range(200))
    )
    assert len(set(ids)) == 200
    # One poller at the lab, then the publishes 20 at a time: 200 pollers at once would measure
    # the connection pool, not the gateway.
    await wait_for(
        lambda: len(lab.ledger("fcm")["items"]) >= 200, 60, "200 notifications at the lab", interval=0.2
    )
    finals = await gather_limited([gateway.wait_done(pid) for pid in ids], limit=20)
    assert all(f["status"] == "completed" and f["counts"]["sent"] == 1 for f in finals)
    counts = Counter(item["token"] for item in lab.ledger("fcm")["items"])
    assert counts == dict.fromkeys(tokens, 1)


async def test_an_idempotent_replay_of_a_small_publish_returns_the_first(gateway: Gateway, lab: Lab) -> None:
    """The replay answers with the first publish and plans nothing again: one notification."""
    c = gateway.client
    dev = await register(c, provider="fcm", token=fcm_token(), platform="android", user="u-idem")
    body = {
        "recipients": [{"type": "user", "user": "u-idem"}],
        "notification": {"title": "once"},
        "idempotency_key": "idem-inline-1",
    }
    first = await c.post("/v1/publish", json=body)
    again = await c.post("/v1/publish", json=body)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json()["publish_id"] == first.json()["publish_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    pid = first.json()["publish_id"]
    done = await gateway.wait_done(pid)
    assert done["counts"]["planned"] == done["counts"]["sent"] == 1, done
    assert (await publish_status(c, pid))["status"] == "completed"
    assert Counter(item["token"] for item in lab.ledger("fcm")["items"]) == {dev["token"]: 1}
