"""Realtime across nodes (issue 13, "Many nodes"): two gateways sharing one database and one
real Redis server. A session on node A counts in node B's presence, a message emitted on B
reaches the session on A, and a node that stops takes its sessions' counts with it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import socketio
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.redis import RedisServer
from support.wait import wait_for

from pushgate.realtime import presence
from pushgate.realtime.gateway import user_room


async def token_for(gw: Gateway, user: str) -> str:
    r = await gw.client.post("/v1/realtime/tokens", json={"user": user})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


async def sessions(gw: Gateway, user: str) -> int:
    r = await gw.client.get(f"/v1/realtime/users/{user}")
    assert r.status_code == 200, r.text
    return int(r.json()["sessions"])


async def test_two_nodes_share_presence_and_messages(
    database_url: str, lab: Lab, redis_server: RedisServer
) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_REDIS_URL=redis_server.url)
    async with running_gateway(settings) as a, running_gateway(settings) as b:
        client = socketio.AsyncClient(reconnection=False)
        got: list[Any] = []
        client.on("hello", got.append)
        await client.connect(a.url, auth={"token": await token_for(b, "u1")}, transports=["websocket"])
        other = socketio.AsyncClient(reconnection=False)
        await other.connect(b.url, auth={"token": await token_for(a, "u1")}, transports=["websocket"])
        try:
            assert await sessions(a, "u1") == 2 and await sessions(b, "u1") == 2
            assert await sessions(b, "u2") == 0
            app_id = user_room_app(a)
            # Emitted on node B to the user's room: python-socketio's Redis manager carries it to
            # the session held by node A (and B's own).
            await b.app.state.services.realtime.sio.emit("hello", {"n": 1}, to=user_room(app_id, "u1"))
            await wait_for(lambda: got == [{"n": 1}], 5, "node A's session got node B's message")
        finally:
            await other.disconnect()
        await wait_for_async(lambda: sessions(a, "u1"), 1)
        await client.disconnect()
        await wait_for_async(lambda: sessions(b, "u1"), 0)


async def test_a_stopped_node_takes_its_sessions_out_of_the_count(
    database_url: str, lab: Lab, redis_server: RedisServer
) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_REDIS_URL=redis_server.url)
    async with running_gateway(settings) as b:
        async with running_gateway(settings) as a:
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(a.url, auth={"token": await token_for(a, "u3")}, transports=["websocket"])
            assert await sessions(b, "u3") == 1
        assert await sessions(b, "u3") == 0  # node A stopped: its counts went with it
        await client.disconnect()


async def test_a_dead_nodes_counts_stop_counting_once_its_heartbeat_is_stale(
    redis_server: RedisServer,
) -> None:
    alive, dead = presence.RedisPresence(redis_server.url), presence.RedisPresence(redis_server.url)
    await alive.start()
    await dead.start()
    try:
        await alive.opened("app|u|x")
        await dead.opened("app|u|x")
        await dead.opened("app|u|x")
        assert await alive.count("app|u|x") == 3
        await dead.closed("app|u|x")
        assert await alive.count("app|u|x") == 2
        # The dead node's heartbeat is made older than the TTL (as if it had crashed then).
        stale = time.time() - presence.NODE_TTL_SECONDS - 1
        await alive.redis.zadd(presence.NODES_KEY, {dead.node: stale})
        assert await alive.count("app|u|x") == 1
    finally:
        assert dead._beat is not None
        dead._beat.cancel()
        await alive.stop()
        await dead.redis.aclose()


def user_room_app(gw: Gateway) -> str:
    """The app id of the gateway's default app (the rooms are named by it)."""
    rooms = gw.app.state.services.realtime.sio.manager.rooms.get("/", {})
    named = [r for r in rooms if isinstance(r, str) and "|u|" in r]
    assert named, rooms
    return str(named[0].split("|")[0])


async def wait_for_async(read: Any, expected: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value}, expected {expected}"
        await asyncio.sleep(0.05)
