"""The socket.io handshake's front door (review of issue 13, findings 8 and 9), through real
handshakes against a running gateway on both databases: forged connection tokens cost no
database reads once an address is over the failure limit (the API keys' throttle), the app a
token names is cached (misses too), and ``cors_allowed_origins`` means what docs/realtime.md
says: ``[]`` is the same origin only, and no origin is told it may send credentials."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import jwt
import pytest
import socketio
from sqlalchemy import event
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

OTHER_SITE = "https://app.example"


@contextmanager
def app_reads(gw: Gateway) -> Iterator[list[str]]:
    """Every statement that reads the ``apps`` table while the block runs."""
    engine = gw.app.state.services.db.engine.sync_engine
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        if re.search(r"\bFROM apps\b", sql):
            seen.append(sql)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


@asynccontextmanager
async def session(gw: Gateway, token: str, **connect: Any) -> AsyncIterator[socketio.AsyncClient]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(gw.url, auth={"token": token}, transports=["websocket"], wait_timeout=5, **connect)
    try:
        yield client
    finally:
        await client.disconnect()


async def refused(gw: Gateway, token: str, **connect: Any) -> str:
    """The reason the gateway refuses a handshake with ``token`` (connect_error's message, or
    the connection error when the handshake never reached socket.io)."""
    client = socketio.AsyncClient(reconnection=False)
    said: list[Any] = []
    client.on("connect_error", said.append)
    with pytest.raises(socketio.exceptions.ConnectionError) as failed:
        await client.connect(
            gw.url, auth={"token": token}, transports=["websocket"], wait_timeout=5, **connect
        )
    await client.disconnect()
    if not said:
        return str(failed.value)
    return str(said[0]["message"]) if isinstance(said[0], dict) else str(said[0])


def signed(iss: str, key: str, *, expires_in: float = 60) -> str:
    return jwt.encode({"sub": "u1", "iss": iss, "exp": int(time.time() + expires_in)}, key, "HS256")


async def test_forged_handshakes_are_throttled_and_cost_no_reads_once_blocked(
    database_url: str, lab: Lab
) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_AUTH_MAX_FAILURES="4")
    async with running_gateway(settings) as gw:
        secret = (await gw.client.get("/v1/realtime/secret")).json()["secret"]
        genuine = signed("default", secret)
        async with session(gw, genuine):
            pass
        with app_reads(gw) as reads:
            async with session(gw, genuine):  # the app is cached: no read
                pass
        assert reads == []
        with app_reads(gw) as reads:
            assert "unknown app" in await refused(gw, signed("nobody", secret))
        assert len(reads) == 2  # by name, then by id
        with app_reads(gw) as reads:
            assert "unknown app" in await refused(gw, signed("nobody", secret))  # the miss is cached
            assert "Signature verification failed" in await refused(gw, signed("default", "x" * 32))
            # An expired token was genuine once: refused, not counted against the address.
            assert "expired" in await refused(gw, signed("default", secret, expires_in=-60))
        assert reads == []
        # The fourth forged token within the window: the address is blocked.
        assert "Signature verification failed" in await refused(gw, signed("default", "y" * 32))
        with app_reads(gw) as reads:
            flood = [await refused(gw, signed(f"guess-{i}", "z" * 32)) for i in range(20)]
        assert reads == []
        assert all("too many failed handshakes from this address" in m for m in flood), flood[:2]
        # As with wrong API keys, the blocked address is refused whatever it sends ...
        assert "too many failed handshakes" in await refused(gw, genuine)
        # ... and it is one throttle: the API refuses the address too.
        r = await gw.client.get("/v1/realtime/users/u1")
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_failures", r.text


async def polling_handshake(gw: Gateway, origin: str | None) -> httpx.Response:
    """engine.io's first request (long-polling), as a browser page of ``origin`` sends it."""
    headers = {"Origin": origin} if origin else {}
    return await gw.client.get("/socket.io/", params={"EIO": "4", "transport": "polling"}, headers=headers)


async def test_an_empty_origin_list_allows_the_same_origin_only(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_REALTIME_CORS_ALLOWED_ORIGINS="[]")
    async with running_gateway(settings) as gw:
        other = await polling_handshake(gw, OTHER_SITE)
        assert other.status_code == 400 and "not an accepted origin" in other.text, other.text
        same = await polling_handshake(gw, gw.url)  # the page is served by pushgate's own origin
        assert same.status_code == 200 and '"sid"' in same.text, same.text
        assert same.headers.get("access-control-allow-origin") == gw.url
        assert "access-control-allow-credentials" not in same.headers
        assert (await polling_handshake(gw, None)).status_code == 200  # no Origin: not a browser
        token = (await gw.client.post("/v1/realtime/tokens", json={"user": "u1"})).json()["token"]
        # Over WebSocket too (engine.io refuses the upgrade: the client sees no socket.io reason).
        assert await refused(gw, token, headers={"Origin": OTHER_SITE}) == "Connection error"
        async with session(gw, token, headers={"Origin": gw.url}):
            pass


async def test_listed_origins_and_any_origin_never_allow_credentials(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_REALTIME_CORS_ALLOWED_ORIGINS=f'["{OTHER_SITE}"]')
    async with running_gateway(settings) as gw:
        listed = await polling_handshake(gw, OTHER_SITE)
        assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == OTHER_SITE
        assert "access-control-allow-credentials" not in listed.headers
        assert (await polling_handshake(gw, "https://evil.example")).status_code == 400


async def test_the_default_allows_any_origin_without_credentials(gateway: Gateway) -> None:
    r = await polling_handshake(gateway, "https://anywhere.example")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://anywhere.example"
    assert "access-control-allow-credentials" not in r.headers


async def test_genuine_handshakes_waiting_for_one_app_lookup_are_not_refused(
    database_url: str, lab: Lab
) -> None:
    """Only a handshake that reads the database holds one of its address's places: ten sessions
    from one address arriving while their app is being looked up all connect, with
    ``max_failures`` 2 (a NAT's users reconnecting together after a restart)."""
    settings = gateway_settings(database_url, lab, PUSHGATE_AUTH_MAX_FAILURES="2")
    async with running_gateway(settings) as gw:
        token = (await gw.client.post("/v1/realtime/tokens", json={"user": "u1"})).json()["token"]
        issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
        realtime = gw.app.state.services.realtime
        release = asyncio.Event()

        async def slow_find(name: str) -> tuple[str, str] | None:
            await release.wait()  # the database is slow to answer
            return await realtime._find_app(name)

        lookup = asyncio.ensure_future(realtime._issuers.resolve(issuer, slow_find))
        clients = [socketio.AsyncClient(reconnection=False) for _ in range(10)]
        connecting = [
            asyncio.ensure_future(
                c.connect(gw.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
            )
            for c in clients
        ]
        await wait_for(
            lambda: len(realtime.sio.eio.sockets) == 10 or any(c.done() for c in connecting),
            10,
            "ten engine.io sessions open (or a refusal)",
        )
        await asyncio.sleep(0.3)  # their socket.io CONNECT packets reach the handler and wait
        release.set()
        outcomes = await asyncio.gather(*connecting, return_exceptions=True)
        assert await lookup is not None
        assert [o for o in outcomes if o is not None] == []
        assert all(c.connected for c in clients)
        for c in clients:
            await c.disconnect()
