"""Scheduled publishes (issue 11, acceptance 1): ``send_at`` holds a publish back until its time.

A scheduled publish is only queue rows (its publish row and a ``plan`` job due at ``send_at``),
so it is listed, cancelled, re-timed and survives a restart like any other row. The first two
tests wait on the real clock for a time a few seconds ahead and check the lab's ledger just
before it; the restart and batch tests check that nothing went during a few poll intervals, then
move :data:`pushgate.domain.clock.CLOCK` to the time (``jump_to``), as the test-clock test moves
it an hour.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import fcm_token, paged, publish, publish_status, register
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.domain import clock
from pushgate.domain.timefmt import parse_rfc3339, rfc3339
from pushgate.store.db import Database
from pushgate.store.publishes import PublishStore
from pushgate.store.queue import JobQueue
from pushgate.store.schema import jobs


@pytest.fixture
def test_clock() -> Iterator[clock.Clock]:
    """The process clock, put back however the test ends."""
    try:
        yield clock.CLOCK
    finally:
        clock.CLOCK.reset()


def ahead(seconds: float) -> tuple[float, str]:
    """A whole second ``seconds`` or a little more ahead of the clock, as epoch and RFC 3339 (a
    whole second: the millisecond ``sent_at`` of a delivery compares exactly with it)."""
    t = float(math.ceil(clock.now()) + seconds)
    return t, rfc3339(t) or ""


async def devices(gw: Gateway, channel: str, n: int = 2) -> list[str]:
    """``n`` FCM devices in ``channel``; their tokens (what the lab's ledger files them under)."""
    tokens = [fcm_token() for _ in range(n)]
    for t in tokens:
        await register(gw, provider="fcm", token=t, platform="android", channels=[channel])
    return tokens


def arrived(lab: Lab, tokens: list[str]) -> list[dict[str, Any]]:
    """The lab's ledger items for ``tokens``."""
    wanted = set(tokens)
    return [i for i in lab.ledger("fcm")["items"] if i["token"] in wanted]


async def until(t: float) -> None:
    """Sleep until the clock reads ``t``."""
    await asyncio.sleep(max(0.0, t - clock.now()))


async def jump_to(t: float) -> None:
    """Let a few poll intervals pass on the real clock (nothing may go early), then move the
    test clock to ``t`` (the one test above waits for its time on the real clock)."""
    await asyncio.sleep(0.3)
    clock.CLOCK.advance(max(0.0, t - clock.now()))


async def served_after(gw: Gateway, lab: Lab, publish_id: str, tokens: list[str], send_at: float) -> None:
    """Wait until every token arrived at the lab, then check the publish completed with every
    delivery sent no earlier than ``send_at`` (no duration is asserted)."""
    await wait_for(lambda: len(arrived(lab, tokens)) == len(tokens), 20, f"{publish_id} at the lab")
    final = await gw.wait_done(publish_id, 20)
    assert final["status"] == "completed" and final["counts"]["sent"] == len(tokens), final
    assert parse_rfc3339(final["started_at"]) >= send_at
    records = await gw.deliveries(publish_id)
    assert len(records) == len(tokens) and all(r["status"] == "sent" for r in records), records
    assert min(parse_rfc3339(r["sent_at"]) for r in records) >= send_at, records
    assert len(arrived(lab, tokens)) == len(tokens)  # each once


async def listed(gw: Gateway, status: str) -> set[str]:
    return {p["id"] for p in await paged(gw.client, "/v1/publishes", status=status)}


async def plan_jobs(gw: Gateway, publish_id: str) -> list[float]:
    """The ``run_at`` of the publish's queued plan jobs."""
    db: Database = gw.app.state.services.db
    async with db.read() as conn:
        q = sa.select(jobs.c.run_at).where(jobs.c.publish_id == publish_id, jobs.c.kind == "plan")
        return [float(r.run_at) for r in (await conn.execute(q)).all()]


async def test_a_scheduled_publish_waits_for_its_time_and_a_cancelled_one_never_goes(
    gateway: Gateway, lab: Lab
) -> None:
    sched_tokens = await devices(gateway, "sched")
    cancel_tokens = await devices(gateway, "cancel")
    send_at, wire = ahead(3)
    r = await gateway.client.post(
        "/v1/publish",
        json={
            "recipients": [{"type": "channel", "channel": "sched"}],
            "notification": {"title": "t"},
            "send_at": wire,
        },
    )
    assert r.status_code == 202 and r.json()["status"] == "scheduled", r.text
    pid = r.json()["publish_id"]
    cancelled = await publish(
        gateway.client, recipients=[{"type": "channel", "channel": "cancel"}], send_at=wire
    )
    now_pid = await publish(gateway.client, recipients=[{"type": "channel", "channel": "cancel"}])

    pub = await publish_status(gateway.client, pid)
    assert (pub["status"], pub["send_at"], pub["counts"]["planned"]) == ("scheduled", wire, 0)
    assert "started_at" not in pub
    assert await plan_jobs(gateway, pid) == [send_at]
    assert await listed(gateway, "scheduled") == {pid, cancelled}  # not the unscheduled one
    r = await gateway.client.get("/v1/publishes", params={"status": "later"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"

    r = await gateway.client.post(f"/v1/publishes/{cancelled}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert await plan_jobs(gateway, cancelled) == []
    await gateway.wait_done(now_pid)  # the unscheduled publish went at once
    assert len(arrived(lab, cancel_tokens)) == 2

    await until(send_at - 0.4)
    assert arrived(lab, sched_tokens) == []  # nothing before its time
    assert (await publish_status(gateway.client, pid))["status"] == "scheduled"
    await served_after(gateway, lab, pid, sched_tokens, send_at)

    await until(send_at + 1)
    assert len(arrived(lab, cancel_tokens)) == 2  # the cancelled one sent nothing
    final = await publish_status(gateway.client, cancelled)
    assert final["status"] == "cancelled" and final["counts"]["planned"] == 0
    assert await listed(gateway, "scheduled") == set()


async def test_a_retimed_publish_goes_at_its_new_time(gateway: Gateway, lab: Lab) -> None:
    early_tokens = await devices(gateway, "earlier")
    late_tokens = await devices(gateway, "later")
    _, far = ahead(3600)
    early = await publish(gateway.client, recipients=[{"type": "channel", "channel": "earlier"}], send_at=far)
    first, first_wire = ahead(2)
    late = await publish(
        gateway.client, recipients=[{"type": "channel", "channel": "later"}], send_at=first_wire
    )

    early_at, early_wire = ahead(2)
    r = await gateway.client.patch(f"/v1/publishes/{early}", json={"send_at": early_wire})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["send_at"]) == ("scheduled", early_wire)
    assert await plan_jobs(gateway, early) == [early_at]
    late_at, late_wire = ahead(4)
    r = await gateway.client.patch(f"/v1/publishes/{late}", json={"send_at": late_wire})
    assert r.status_code == 200 and r.json()["send_at"] == late_wire, r.text
    assert await plan_jobs(gateway, late) == [late_at]

    await served_after(gateway, lab, early, early_tokens, early_at)
    await until(max(first + 0.5, late_at - 0.4))
    assert arrived(lab, late_tokens) == []  # not at its first time, nor before its new one
    await served_after(gateway, lab, late, late_tokens, late_at)

    # Started: too late to re-time.
    r = await gateway.client.patch(f"/v1/publishes/{late}", json={"send_at": far})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "conflict"
    assert r.json()["error"]["details"] == {"status": "completed"}
    assert (await publish_status(gateway.client, late))["send_at"] == late_wire


async def test_patch_validation(gateway: Gateway) -> None:
    _, far = ahead(3600)
    _, expiry = ahead(1800)
    pid = await publish(gateway.client, recipients=[{"type": "user", "user": "nobody"}], send_at=far)
    _, soon = ahead(60)
    early = await publish(
        gateway.client, recipients=[{"type": "user", "user": "nobody"}], send_at=soon, expire_at=expiry
    )
    cases: list[tuple[str, Any, int, str]] = [
        (pid, {"send_at": "tomorrow"}, 400, "invalid_request"),
        (pid, {"send_at": "2030-01-01T00:00:00"}, 400, "invalid_request"),  # no offset
        (pid, {"send_at": far, "title": "x"}, 400, "invalid_request"),
        (pid, {}, 400, "invalid_request"),
        (early, {"send_at": far}, 400, "invalid_request"),  # after its expire_at
        ("pub_unknown", {"send_at": far}, 404, "not_found"),
    ]
    for target, body, status, code in cases:
        r = await gateway.client.patch(f"/v1/publishes/{target}", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
    for target, when in ((pid, far), (early, soon)):  # nothing changed
        assert (await publish_status(gateway.client, target))["status"] == "scheduled"
        assert (await publish_status(gateway.client, target))["send_at"] == when
    # Another app cannot see it.
    _, key = await gateway.app.state.services.apps.create("other")
    async with gateway.as_app(key) as other:
        r = await other.patch(f"/v1/publishes/{pid}", json={"send_at": far})
        assert r.status_code == 404, r.text
    assert (await publish_status(gateway.client, pid))["send_at"] == far


async def test_scheduled_publish_survives_a_restart(database_url: str, lab: Lab) -> None:
    lab.reset()
    settings = gateway_settings(database_url, lab)
    async with running_gateway(settings) as gw:
        tokens = await devices(gw, "restart", 3)
        send_at, wire = ahead(3)
        pid = await publish(gw.client, recipients=[{"type": "channel", "channel": "restart"}], send_at=wire)
    # The process is gone; its publish is rows in the database.
    assert arrived(lab, tokens) == []
    async with running_gateway(settings) as gw:
        assert (await publish_status(gw.client, pid))["status"] == "scheduled"
        assert await plan_jobs(gw, pid) == [send_at]
        await asyncio.sleep(0.3)  # several poll intervals of the new process
        assert arrived(lab, tokens) == []
        await jump_to(send_at)
        await served_after(gw, lab, pid, tokens, send_at)


async def test_batch_items_with_send_at(gateway: Gateway, lab: Lab) -> None:
    later_tokens = await devices(gateway, "b-later")
    now_tokens = await devices(gateway, "b-now")
    past_tokens = await devices(gateway, "b-past")
    send_at, wire = ahead(3)
    _, past = ahead(-60)
    items = [
        {
            "recipients": [{"type": "channel", "channel": "b-later"}],
            "notification": {"title": "t"},
            "send_at": wire,
        },
        {"recipients": [{"type": "channel", "channel": "b-now"}], "notification": {"title": "t"}},
        {
            "recipients": [{"type": "channel", "channel": "b-past"}],
            "notification": {"title": "t"},
            "send_at": past,
        },
        {
            "recipients": [{"type": "channel", "channel": "b-now"}],
            "notification": {"title": "t"},
            "send_at": "soon",
        },
        {
            "recipients": [{"type": "channel", "channel": "b-now"}],
            "notification": {"title": "t"},
            "send_at": ahead(600)[1],
            "expire_at": ahead(300)[1],
        },
    ]
    r = await gateway.client.post("/v1/publish/batch", json={"publishes": items})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["admitted"], body["rejected"]) == (3, 2)
    out = body["items"]
    assert out[0]["status"] == "scheduled"
    assert out[1]["status"] != "scheduled" and out[2]["status"] != "scheduled"
    assert [o["error"]["code"] for o in out[3:]] == ["invalid_request", "invalid_request"]
    assert out[3]["error"]["message"].startswith("send_at:")
    assert out[4]["error"]["message"].startswith("expire_at:")
    # Unscheduled and past ones go now (the past one records its send_at all the same).
    for o, tokens in ((out[1], now_tokens), (out[2], past_tokens)):
        assert (await gateway.wait_done(o["publish_id"]))["status"] == "completed"
        assert len(arrived(lab, tokens)) == 2
    assert (await publish_status(gateway.client, out[2]["publish_id"]))["send_at"] == past
    await asyncio.sleep(0.3)
    assert arrived(lab, later_tokens) == []
    assert await listed(gateway, "scheduled") == {out[0]["publish_id"]}
    await jump_to(send_at)
    await served_after(gateway, lab, out[0]["publish_id"], later_tokens, send_at)


async def test_the_test_clock_makes_an_hour_ahead_publish_due(
    gateway: Gateway, lab: Lab, test_clock: clock.Clock
) -> None:
    tokens = await devices(gateway, "hour")
    now_tokens = await devices(gateway, "hour-now")
    send_at, wire = ahead(3600)
    pid = await publish(gateway.client, recipients=[{"type": "channel", "channel": "hour"}], send_at=wire)
    # Re-timed to the past: it starts now.
    moved = await publish(
        gateway.client, recipients=[{"type": "channel", "channel": "hour-now"}], send_at=wire
    )
    _, past = ahead(-10)
    r = await gateway.client.patch(f"/v1/publishes/{moved}", json={"send_at": past})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["send_at"]) == ("accepted", past)
    assert (await gateway.wait_done(moved))["status"] == "completed"
    assert len(arrived(lab, now_tokens)) == 2

    await asyncio.sleep(0.5)  # several poll intervals: the far-away job is not due
    assert arrived(lab, tokens) == []
    assert (await publish_status(gateway.client, pid))["status"] == "scheduled"
    test_clock.advance(3600)
    await served_after(gateway, lab, pid, tokens, send_at)


async def test_a_claimed_plan_job_is_not_retimed_and_a_lapsed_claim_is_fenced(database_url: str) -> None:
    """The store's re-time, against a worker holding the plan job: while its lease runs, the
    publish is starting (nothing changes); once it lapsed, the job moves and the old claim's
    number no longer matches (its writes would be refused)."""
    db = Database(database_url)
    await db.migrate()
    try:
        store = PublishStore(db)
        request = {"recipients": [{"type": "user", "user": "u"}], "notification": {"title": "t"}}
        send_at, _ = ahead(60)
        pub, _ = await store.admit(
            "app_s", request, idempotency_key=None, expire_at=None, window_seconds=60, send_at=send_at
        )
        assert pub.status == "scheduled"

        async def hold(lease_until: float) -> None:
            async with db.write() as conn:
                await conn.execute(
                    sa.update(jobs)
                    .where(jobs.c.publish_id == pub.id)
                    .values(lease_owner="worker-a", lease_until=lease_until, claims=1)
                )

        await hold(clock.now() + 30)
        same, changed = await store.reschedule("app_s", pub.id, send_at + 60)
        assert same is not None and not changed
        assert (same.status, same.send_at) == ("scheduled", send_at)
        assert await store.reschedule("app_other", pub.id, send_at + 60) == (None, False)

        await hold(clock.now() - 1)  # the worker died
        moved, changed = await store.reschedule("app_s", pub.id, send_at + 60)
        assert changed and moved is not None and moved.send_at == send_at + 60
        async with db.read() as conn:
            job = (await conn.execute(sa.select(jobs).where(jobs.c.publish_id == pub.id))).one()
        assert (job.run_at, job.lease_owner, job.lease_until) == (send_at + 60, None, None)
        assert (job.claims, job.deferrals) == (2, 1)  # fenced, and not held against it as a failure

        # A time not ahead of the clock starts it now.
        started, changed = await store.reschedule("app_s", pub.id, send_at - 3600)
        assert changed and started is not None and started.status == "accepted"
        assert await JobQueue(db).next_due() == pytest.approx(clock.now(), abs=5)
    finally:
        await db.dispose()
