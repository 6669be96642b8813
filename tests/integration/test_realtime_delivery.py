"""Realtime as a delivery path (issue 13, acceptance 1, 2, 3 and 6): a publish's ``realtime``
mode reaches open socket.io sessions as the ``notification`` event (python-socketio's client,
and the npm ``socket.io-client`` run by node: tests/js/notify.mjs), records one delivery per
session, and decides the pushes (the provider lab) by the mode and the sessions' acks; with
Redis, a session on one node is reached from another node's worker."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import socketio
import sqlalchemy as sa
from support.api import fcm_token, publish, register
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.redis import RedisServer
from support.wait import wait_for

from pushgate.realtime.delivery import RealtimeDelivery
from pushgate.realtime.gateway import user_room
from pushgate.store.schema import deliveries, publish_stats, realtime_acks

JS = Path(__file__).parents[1] / "js"
#: ``first``'s wait for an ack in these tests (the sessions ack within milliseconds).
ACK_TIMEOUT = 1.5


class Session:
    """One python-socketio client session; ``acks``: whether it answers ``notification`` (a
    session that does not keeps the ack pending until :meth:`close`)."""

    def __init__(self, acks: bool = True) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.got: list[dict[str, Any]] = []
        self._release = asyncio.Event()
        self.acks = acks
        self.client.on("notification", self._on)

    async def _on(self, data: dict[str, Any]) -> str:
        self.got.append(data)
        if not self.acks:
            await self._release.wait()  # python-socketio acks when the handler returns
        return "ok"

    async def connect(self, url: str, token: str) -> None:
        await self.client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
        #: The session's id on the server (kept: the client forgets it once disconnected).
        self.sid = str(self.client.get_sid("/"))

    async def close(self) -> None:
        self._release.set()
        await self.client.disconnect()


async def token(gw: Gateway, user: str, **body: Any) -> str:
    r = await gw.client.post("/v1/realtime/tokens", json={"user": user, **body})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


@asynccontextmanager
async def sessions(gw: Gateway, *specs: tuple[str, dict[str, Any]]) -> AsyncIterator[list[Session]]:
    """Open one session per ``(user, options)``; options: ``acks`` (default True), ``channels``."""
    out: list[Session] = []
    try:
        for user, opts in specs:
            s = Session(opts.get("acks", True))
            out.append(s)
            await s.connect(gw.url, await token(gw, user, channels=opts.get("channels")))
        yield out
    finally:
        for s in out:
            await s.close()


async def devices_of(gw: Gateway, user: str, n: int) -> list[dict[str, Any]]:
    return [
        await register(gw, provider="fcm", token=fcm_token(), platform="android", user=user) for _ in range(n)
    ]


def pushes(lab: Lab, device: dict[str, Any]) -> int:
    return int(lab.ledger("fcm", token=device["token"])["total"])


async def delivered(gw: Gateway, publish_id: str) -> dict[str, float | None]:
    """Each delivery's ``delivered_at`` (receipts are not in the API's delivery view yet)."""
    async with gw.app.state.services.db.read() as conn:
        rows = await conn.execute(
            sa.select(deliveries.c.recipient_id, deliveries.c.delivered_at).where(
                deliveries.c.publish_id == publish_id
            )
        )
        return {r.recipient_id: r.delivered_at for r in rows}


async def stat(gw: Gateway, publish_id: str, provider: str, counter: str) -> int:
    async with gw.app.state.services.db.read() as conn:
        q = sa.select(publish_stats.c[counter]).where(
            publish_stats.c.publish_id == publish_id, publish_stats.c.provider == provider
        )
        return int((await conn.execute(q)).scalar() or 0)


@pytest.fixture
async def rt_gateway(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    settings = gateway_settings(database_url, lab, PUSHGATE_REALTIME_ACK_TIMEOUT=str(ACK_TIMEOUT))
    async with running_gateway(settings) as gw:
        yield gw


async def test_also_reaches_every_session_once_and_every_device(rt_gateway: Gateway, lab: Lab) -> None:
    gw = rt_gateway
    phones = await devices_of(gw, "also-u1", 2)
    async with sessions(gw, *[("also-u1", {})] * 3, ("also-other", {})) as (*mine, other):
        pid = await publish(gw.client, recipients=[{"type": "user", "user": "also-u1"}], realtime="also")
        done = await gw.wait_done(pid)
        await wait_for(lambda: all(s.got for s in mine), 10, "every session's notification")
        for s in mine:
            assert len(s.got) == 1, s.got
            event = s.got[0]
            assert event["publish_id"] == pid and event["delivery_id"] == f"ses_{s.sid}", event
            assert event["notification"] == {"title": "Hello", "body": "World"} and "channel" not in event
        assert other.got == []

        # Each session's ack is its delivery's ``delivered`` receipt, counted once.
        async def all_acked() -> bool:
            times = await delivered(gw, pid)
            return all(times[f"ses_{s.sid}"] for s in mine)

        await wait_for(all_acked, 10, "the three acks recorded", interval=0.1)
        assert await stat(gw, pid, "realtime", "delivered") == 3
    assert done["status"] == "completed", done
    assert [pushes(lab, d) for d in phones] == [1, 1]
    assert done["by_provider"]["realtime"]["planned"] == done["by_provider"]["realtime"]["sent"] == 3
    assert done["by_provider"]["fcm"]["sent"] == 2
    assert done["counts"]["planned"] == done["counts"]["sent"] == 5
    records = await gw.deliveries(pid)
    sessions_recorded = sorted(d["recipient_id"] for d in records if d["provider"] == "realtime")
    assert sessions_recorded == sorted(f"ses_{s.sid}" for s in mine)
    assert all(
        d["device_id"] is None and d["status"] == "sent" for d in records if d["provider"] == "realtime"
    )


async def test_first_pushes_only_to_users_who_did_not_ack(rt_gateway: Gateway, lab: Lab) -> None:
    gw = rt_gateway
    [acker_phone] = await devices_of(gw, "first-u1", 1)
    [offline_phone] = await devices_of(gw, "first-u2", 1)
    [silent_phone] = await devices_of(gw, "first-u3", 1)
    specs = [("first-u1", {}), ("first-u3", {"acks": False})]
    async with sessions(gw, *specs) as (acker, silent):
        users = ["first-u1", "first-u2", "first-u3"]
        pid = await publish(
            gw.client, recipients=[{"type": "user", "user": u} for u in users], realtime="first"
        )
        done = await gw.wait_done(pid)
        assert len(acker.got) == 1 and len(silent.got) == 1
        async with gw.app.state.services.db.read() as conn:  # before u3's late ack, at its close
            q = sa.select(realtime_acks.c.user).where(realtime_acks.c.publish_id == pid)
            acked = [r.user for r in (await conn.execute(q)).all()]
    assert acked == ["first-u1"]
    assert done["status"] == "completed", done
    # u1 acked: no push, its device's record says why.
    assert pushes(lab, acker_phone) == 0
    by_device = {d["device_id"]: d for d in await gw.deliveries(pid)}
    assert by_device[acker_phone["id"]]["status"] == "skipped", by_device
    assert by_device[acker_phone["id"]]["reason"] == "realtime_acked"
    assert done["skipped_by_reason"] == {"realtime_acked": 1}
    # u2 had no session and u3 did not ack: both got the push.
    assert pushes(lab, offline_phone) == 1 and pushes(lab, silent_phone) == 1
    assert by_device[offline_phone["id"]]["status"] == by_device[silent_phone["id"]]["status"] == "sent"
    async with gw.app.state.services.db.read() as conn:
        q = sa.select(deliveries.c.recipient_id, deliveries.c.sent_at).where(deliveries.c.publish_id == pid)
        sent_at = {r.recipient_id: r.sent_at for r in (await conn.execute(q)).all()}
    # u3's push waited for the ack timeout after the emit; u2's (no session) did not wait for it.
    emitted = sent_at[f"ses_{silent.sid}"]
    assert sent_at[silent_phone["id"]] >= emitted + ACK_TIMEOUT
    assert sent_at[offline_phone["id"]] < sent_at[silent_phone["id"]]
    assert done["by_provider"]["realtime"]["sent"] == 2 and done["by_provider"]["fcm"]["sent"] == 2


async def test_the_npm_client_acks_and_first_sends_no_push(rt_gateway: Gateway, lab: Lab) -> None:
    gw = rt_gateway
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("node or tests/js/node_modules missing: run `make test` (it installs both)")
    [phone] = await devices_of(gw, "js-first", 1)
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        node, str(JS / "notify.mjs"), gw.url, await token(gw, "js-first"), stdin=pipe, stdout=pipe
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        hello = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        assert hello["event"] == "connected", hello
        pid = await publish(gw.client, recipients=[{"type": "user", "user": "js-first"}], realtime="first")
        heard = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        assert heard["event"] == "notification" and heard["data"]["delivery_id"] == f"ses_{hello['sid']}"
        done = await gw.wait_done(pid)
    finally:
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert pushes(lab, phone) == 0
    assert done["skipped_by_reason"] == {"realtime_acked": 1}, done
    assert (await delivered(gw, pid))[f"ses_{hello['sid']}"] is not None


async def test_only_marks_offline_users_and_pushes_nothing(rt_gateway: Gateway, lab: Lab) -> None:
    gw = rt_gateway
    [phone] = await devices_of(gw, "only-off", 1)
    [online_phone] = await devices_of(gw, "only-on", 1)
    async with sessions(gw, ("only-on", {})) as [online]:
        pid = await publish(
            gw.client,
            recipients=[{"type": "user", "user": "only-off"}, {"type": "user", "user": "only-on"}],
            realtime="only",
        )
        done = await gw.wait_done(pid)
        await wait_for(lambda: online.got, 10, "the online user's notification")
        assert len(online.got) == 1
    assert done["status"] == "completed", done
    assert pushes(lab, phone) == 0 and pushes(lab, online_phone) == 0
    records = await gw.deliveries(pid)
    assert {(d["provider"], d["status"], d["reason"]) for d in records} == {
        ("realtime", "skipped", "offline"),
        ("realtime", "sent", None),
    }
    offline = next(d for d in records if d["status"] == "skipped")
    assert offline["recipient_id"].startswith("usr_") and len(offline["recipient_id"]) == 36
    assert done["skipped_by_reason"] == {"offline": 1}
    assert done["counts"]["planned"] == 2 and done["counts"]["sent"] == 1


async def test_a_channel_publish_reaches_the_channels_sessions(rt_gateway: Gateway) -> None:
    gw = rt_gateway
    specs = [("ch-a", {"channels": ["rt-news"]}), ("ch-b", {"channels": ["rt-sport"]}), ("ch-c", {})]
    async with sessions(gw, *specs) as (news, sport, none):
        pid = await publish(
            gw.client, recipients=[{"type": "channel", "channel": "rt-news"}], realtime="only"
        )
        done = await gw.wait_done(pid)
        await wait_for(lambda: news.got, 10, "the channel session's notification")
        assert len(news.got) == 1 and news.got[0]["channel"] == "rt-news"
        assert sport.got == [] and none.got == []
    assert done["status"] == "completed" and done["by_provider"]["realtime"]["sent"] == 1, done


async def test_a_template_is_rendered_per_session_user(rt_gateway: Gateway) -> None:
    gw = rt_gateway
    hello = {"id": "rt-hello", "title": "Hi {{ user.id }}", "body": "Order {{ data.order }}"}
    nick = {"id": "rt-nick", "title": "Hi {{ device.meta.nick }}"}  # a session has no device
    for body in (hello, nick):
        r = await gw.client.post("/v1/templates", json=body)
        assert r.status_code == 201, r.text
    async with sessions(gw, ("tpl-u1", {}), ("tpl-u2", {})) as (first, second):
        pid = await publish(
            gw.client,
            recipients=[{"type": "user", "user": "tpl-u1"}],
            template={"id": "rt-hello", "data": {"order": "A-1"}},
            realtime="only",
        )
        await gw.wait_done(pid)
        await wait_for(lambda: first.got, 10, "the rendered notification")
        assert first.got[0]["notification"] == {"title": "Hi tpl-u1", "body": "Order A-1"}
        to_u2 = [{"type": "user", "user": "tpl-u2"}]
        bad = await publish(gw.client, recipients=to_u2, template={"id": "rt-nick"}, realtime="only")
        done = await gw.wait_done(bad)
        assert second.got == []
    [record] = await gw.deliveries(bad)
    assert (record["recipient_id"], record["status"]) == (f"ses_{second.sid}", "failed"), record
    assert (record["error_code"], record["error_class"]) == ("template_error", "payload")
    assert "device.meta" in record["error_message"]
    assert done["counts"]["failed"] == done["counts"]["planned"] == 1, done


async def test_the_configured_default_mode_applies_where_it_can(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_REALTIME_DEFAULT_MODE="also")
    async with running_gateway(settings) as gw, sessions(gw, ("default-u1", {})) as [s]:
        to_user = [{"type": "user", "user": "default-u1"}]
        pid = await publish(gw.client, recipients=to_user)
        done = await gw.wait_done(pid)
        assert done["by_provider"]["realtime"]["sent"] == 1, done
        await wait_for(lambda: s.got, 10, "the notification")
        off = await publish(gw.client, recipients=to_user, realtime="off")
        assert "realtime" not in (await gw.wait_done(off))["by_provider"]
        # A dry run sends nothing: the default does not make it a 400.
        r = await gw.client.post(
            "/v1/publish", json={"recipients": to_user, "notification": {"title": "t"}, "dry_run": True}
        )
        assert r.status_code in (200, 202), r.text
    assert len(s.got) == 1


async def test_realtime_is_checked_at_admission(rt_gateway: Gateway) -> None:
    gw = rt_gateway
    user = [{"type": "user", "user": "x"}]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"recipients": user, "realtime": "sometimes"}, "realtime: one of off"),
        ({"recipients": [{"type": "device", "device_id": "dev_x"}], "realtime": "only"}, 'realtime: "only"'),
        ({"recipients": user, "realtime": "also", "dry_run": True}, "dry run"),
    ]
    for body, said in cases:
        r = await gw.client.post("/v1/publish", json={"notification": {"title": "t"}, **body})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"].startswith("realtime: ") and said in r.json()["error"]["message"]
    item = {"recipients": user, "notification": {"body": "b"}, "realtime": "never"}
    r = await gw.client.post("/v1/publish/batch", json={"publishes": [item]})
    assert r.json()["items"][0]["error"]["message"].startswith("realtime: one of off"), r.text


async def test_two_nodes_a_session_on_one_is_reached_once_from_the_other(
    database_url: str, lab: Lab, redis_server: RedisServer
) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_REDIS_URL=redis_server.url)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_gateway(settings))
        b = await stack.enter_async_context(running_gateway(settings))
        s = Session()
        await s.connect(a.url, await token(b, "nodes-u1"))
        stack.push_async_callback(s.close)
        pid = await publish(b.client, recipients=[{"type": "user", "user": "nodes-u1"}], realtime="only")
        done = await b.wait_done(pid)
        assert done["status"] == "completed" and done["by_provider"]["realtime"]["sent"] == 1, done
        await wait_for(lambda: s.got, 10, "the session's notification")
        assert len(s.got) == 1 and s.got[0]["delivery_id"] == f"ses_{s.sid}"
        # Node A, holding the session, recorded its ack.

        async def acked() -> float | None:
            return (await delivered(b, pid))[f"ses_{s.sid}"]

        await wait_for(acked, 10, "the ack")
        await wait_for(lambda: stat(b, pid, "realtime", "delivered"), 10, "the ack counted", interval=0.1)
        # A process with no gateway (a `pushgate worker`) reaches it through Redis as well.
        requester = RealtimeDelivery(None, None, redis_server.url)
        try:
            rooms = a.app.state.services.realtime.sio.rooms(s.sid)
            app_id = next(r for r in rooms if "|u|" in r).split("|")[0]
            reach = await requester.deliver(app_id, "pub_x", {user_room(app_id, "nodes-u1"): None}, {"n": 2})
        finally:
            await requester.stop()
        assert reach.sent == [(s.sid, "nodes-u1")] and reach.failed == []
        await wait_for(lambda: len(s.got) == 2, 5, "the second event")
        assert s.got[1] == {"n": 2, "delivery_id": f"ses_{s.sid}"}
