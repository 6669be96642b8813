"""The realtime gateway's front door (issue 13): connection tokens, the socket.io handshake over
WebSocket and long-polling, rooms and presence, with python-socketio's own client against a
running gateway."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
import socketio
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.realtime.gateway import channel_room


async def mint(gw: Gateway, user: str, **body: Any) -> str:
    r = await gw.client.post("/v1/realtime/tokens", json={"user": user, **body})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


@asynccontextmanager
async def session(
    gw: Gateway, token: str, transport: str = "websocket"
) -> AsyncIterator[socketio.AsyncClient]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(gw.url, auth={"token": token}, transports=[transport], wait_timeout=5)
    try:
        yield client
    finally:
        # A long-polling client's disconnect returns after the server's ping interval and
        # timeout (python-socketio's client waits out its pending poll); the tests' are short.
        await client.disconnect()


async def refused(gw: Gateway, auth: Any) -> str:
    """The connect_error message the gateway answers ``auth`` with (socket.io v4 hands it to the
    client's ``connect_error`` handler)."""
    client = socketio.AsyncClient(reconnection=False)
    said: list[Any] = []
    client.on("connect_error", said.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(gw.url, auth=auth, transports=["websocket"], wait_timeout=5)
    await client.disconnect()
    assert len(said) == 1, said
    return str(said[0]["message"]) if isinstance(said[0], dict) else str(said[0])


async def presence(gw: Gateway, user: str) -> int:
    r = await gw.client.get(f"/v1/realtime/users/{user}")
    assert r.status_code == 200, r.text
    return int(r.json()["sessions"])


async def test_sessions_over_websocket_and_polling_count_as_presence(gateway: Gateway) -> None:
    token = await mint(gateway, "u1", channels=["news"])
    assert await presence(gateway, "u1") == 0
    async with session(gateway, token) as ws, session(gateway, token, "polling") as poll:
        assert ws.transport() == "websocket" and poll.transport() == "polling"
        assert await presence(gateway, "u1") == 2
        assert await presence(gateway, "u2") == 0
        gw_rt = gateway.app.state.services.realtime
        rooms = gw_rt.sio.rooms(ws.get_sid("/"))
        assert any(r.endswith("|c|news") for r in rooms), rooms
    await wait_for(lambda: not gw_rt.sio.manager.rooms.get("/", {}).get(None), 5, "sessions closed")
    assert await presence(gateway, "u1") == 0


async def test_a_bad_token_is_refused_with_its_reason(gateway: Gateway) -> None:
    # No auth at all is notification-socket.io's pending session (docs/compat.md), not refused.
    assert "missing token" in await refused(gateway, {"token": None})
    assert "not a JWT" in await refused(gateway, {"token": "nope"})
    secret = (await gateway.client.get("/v1/realtime/secret")).json()["secret"]
    late = jwt.encode({"sub": "u1", "iss": "default", "exp": int(time.time()) - 60}, secret, "HS256")
    assert "expired" in await refused(gateway, {"token": late})
    forged = jwt.encode({"sub": "u1", "iss": "default", "exp": int(time.time()) + 60}, "x" * 32, "HS256")
    assert "Signature verification failed" in await refused(gateway, {"token": forged})
    stranger = jwt.encode({"sub": "u1", "iss": "nobody", "exp": int(time.time()) + 60}, secret, "HS256")
    assert "unknown app" in await refused(gateway, {"token": stranger})
    no_user = jwt.encode({"iss": "default", "exp": int(time.time()) + 60}, secret, "HS256")
    assert "sub" in await refused(gateway, {"token": no_user})


async def test_a_backend_signs_its_own_token_and_a_rotation_retires_the_secret(gateway: Gateway) -> None:
    r = await gateway.client.get("/v1/realtime/secret")
    assert r.status_code == 200 and r.json()["source"] == "stored", r.text
    secret = r.json()["secret"]
    assert (await gateway.client.get("/v1/realtime/secret")).json()["secret"] == secret  # stable
    own = jwt.encode(
        {"sub": "u9", "iss": "default", "exp": int(time.time()) + 60, "channels": ["a", "b"]}, secret, "HS256"
    )
    async with session(gateway, own) as s:
        assert await presence(gateway, "u9") == 1
        rooms = gateway.app.state.services.realtime.sio.rooms(s.get_sid("/"))
        app_room = next(r for r in rooms if r.endswith("|u|u9"))
        app_id = app_room.split("|")[0]
        assert {channel_room(app_id, "a"), channel_room(app_id, "b")} <= set(rooms)
    rotated = await gateway.client.post("/v1/realtime/secret/rotate")
    assert rotated.status_code == 200 and rotated.json()["secret"] != secret
    assert "Signature verification failed" in await refused(gateway, {"token": own})


async def test_token_requests_are_checked(gateway: Gateway) -> None:
    too_long = await gateway.client.post("/v1/realtime/tokens", json={"user": "u1", "ttl_seconds": 86_401})
    assert too_long.status_code == 400 and "max_token_ttl_seconds" in too_long.json()["error"]["message"]
    for body in ({}, {"user": ""}, {"user": "u", "channels": [""]}, {"user": "u", "extra": 1}):
        r = await gateway.client.post("/v1/realtime/tokens", json=body)
        assert r.status_code == 400, (body, r.text)
    r = await gateway.client.post("/v1/realtime/tokens", json={"user": "u1", "ttl_seconds": 120})
    claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
    assert claims["sub"] == "u1" and claims["exp"] - time.time() == pytest.approx(120, abs=5)


async def test_a_configured_secret_signs_and_cannot_be_rotated_through_the_api(
    database_url: str, lab: Lab
) -> None:
    configured = "configured-realtime-secret-0123456789"
    settings = gateway_settings(database_url, lab, PUSHGATE_REALTIME_TOKEN_SECRET=configured)
    async with running_gateway(settings) as gw:
        r = await gw.client.get("/v1/realtime/secret")
        assert r.json() == {"secret": configured, "source": "config"}
        token = await mint(gw, "u1")
        jwt.decode(token, configured, algorithms=["HS256"])  # signed with the configured secret
        async with session(gw, token):
            assert await presence(gw, "u1") == 1
        r = await gw.client.post("/v1/realtime/secret/rotate")
        assert r.status_code == 409 and r.json()["error"]["code"] == "configured_secret"


async def test_with_realtime_off_nothing_answers_at_socket_io(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_REALTIME_ENABLED="false")
    async with running_gateway(settings) as gw:
        handshake = await gw.client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert handshake.status_code == 404
        r = await gw.client.post("/v1/realtime/tokens", json={"user": "u1"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "realtime_disabled"


async def test_the_docs_python_example_runs(gateway: Gateway) -> None:
    text = (Path(__file__).parents[2] / "docs" / "realtime.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", text, re.S)
    scope: dict[str, Any] = {}
    exec(compile(example, "docs/realtime.md", "exec"), scope)
    assert await scope["main"](gateway.url, gateway.key) == 1
    sio = gateway.app.state.services.realtime.sio
    await wait_for(lambda: not sio.manager.rooms.get("/", {}).get(None), 5, "the session closed")
    assert await presence(gateway, "alice") == 0
