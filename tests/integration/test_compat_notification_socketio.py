"""notification-socket.io on pushgate (docs/compat.md, "notification-socket.io"): its README's flow
replayed as written (the backend registers a connection id over REST with ``X-AUTH-TOKEN``, the
client connects without a token and emits ``register(userId, connectionId)``, the backend POSTs
``{"message": ...}`` and the client's ``message`` event carries that JSON), several sessions of a
user, wrong connection ids, the status routes, auth and bad input, on both databases; and the npm
``socket.io-client`` running the README's JavaScript unmodified (tests/js/nsio.mjs).

notification-socket.io publishes no server library (its backends call the REST API directly), so
the REST requests are replayed over HTTP as the README writes them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from support.api import publish
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.redis import RedisServer
from support.wait import wait_for

from pushgate.realtime import foreign

JS = Path(__file__).parents[1] / "js"
#: The README's example message.
README_MESSAGE = {"message": {"title": "Title of message", "body": "Body of message", "params": {}}}


def _auth(gw: Gateway) -> dict[str, str]:
    return {"X-AUTH-TOKEN": gw.key}


async def _rest(gw: Gateway, method: str, path: str, **kw: Any) -> httpx.Response:
    kw.setdefault("headers", _auth(gw))
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
        return await c.request(method, path, **kw)


async def _register(gw: Gateway, user: str) -> str:
    """The README's step 3: the backend registers a fresh connection id (a UUID) for its user."""
    connection_id = str(uuid.uuid4())
    r = await _rest(gw, "PUT", f"/api/{user}/register", params={"connectionId": connection_id})
    assert (r.status_code, r.content) == (200, b""), r.text
    return connection_id


async def _presence(gw: Gateway, user: str) -> int:
    r = await gw.client.get(f"/v1/realtime/users/{user}")
    assert r.status_code == 200, r.text
    return int(r.json()["sessions"])


async def _has_sessions(gw: Gateway, user: str, n: int) -> bool:
    return await _presence(gw, user) == n


class Client:
    """A notification-socket.io client app on python-socketio: connects with no auth at all."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.messages: list[Any] = []
        self.notifications: list[Any] = []
        self.closed = asyncio.Event()
        self.sio.on("message", self.messages.append)
        self.sio.on("notification", self.notifications.append)
        self.sio.on("disconnect", lambda *_: self.closed.set())

    async def open(self, gw: Gateway, user: str, connection_id: str) -> None:
        await self.sio.connect(gw.url, transports=["websocket"], wait_timeout=5)  # io.connect(url)
        await self.sio.emit("register", (user, connection_id))

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        await c.close()


async def _connected(gw: Gateway, clients: list[Client], user: str, n: int = 1) -> list[Client]:
    """``n`` clients of ``user``, each with a connection id of its own, registered."""
    out = []
    for _ in range(n):
        c = Client()
        clients.append(c)
        await c.open(gw, user, await _register(gw, user))
        out.append(c)
    await wait_for(lambda: _has_sessions(gw, user, n), 10, f"{n} sessions of {user}")
    return out


async def _push(gw: Gateway, user: str, body: Any = README_MESSAGE) -> str:
    r = await _rest(gw, "POST", f"/api/{user}/push", json=body)
    assert (r.status_code, r.content) == (200, b""), r.text
    return r.headers["X-Pushgate-Publish-Id"]


async def test_readme_flow_delivers_the_posted_message(gateway: Gateway, clients: list[Client]) -> None:
    [client] = await _connected(gateway, clients, "readme-user")
    pid = await _push(gateway, "readme-user")
    await wait_for(lambda: client.messages, 10, "the message event")
    assert client.messages == [README_MESSAGE["message"]]
    assert client.notifications == []  # not pushgate's own event
    done = await gateway.wait_done(pid)
    assert done["status"] == "completed", done
    [record] = await gateway.deliveries(pid)
    assert record["provider"] == "realtime" and record["status"] == "sent", record  # no ack: stays sent
    assert record["recipient_id"] == f"ses_{client.sio.get_sid('/')}"


async def test_every_session_of_a_user_gets_each_message_once(
    gateway: Gateway, clients: list[Client]
) -> None:
    tabs = await _connected(gateway, clients, "multi-user", n=3)
    [other] = await _connected(gateway, clients, "multi-other")
    first = {"message": {"n": 1, "text": "zażółć", "list": [1, 2.5, None, True]}}
    second = {"message": "just a string"}
    for body in (first, second):
        await gateway.wait_done(await _push(gateway, "multi-user", body))
    await wait_for(lambda: all(len(t.messages) == 2 for t in tabs), 10, "both messages in every tab")
    for t in tabs:
        assert t.messages == [first["message"], second["message"]]
    assert other.messages == []
    # A native publish to the user reaches these sessions too, its notification as the message.
    pid = await publish(gateway.client, recipients=[{"type": "user", "user": "multi-user"}], realtime="only")
    await gateway.wait_done(pid)
    await wait_for(lambda: all(len(t.messages) == 3 for t in tabs), 10, "the native publish")
    assert [t.messages[2] for t in tabs] == [{"title": "Hello", "body": "World"}] * 3


async def test_sessions_on_two_nodes_each_get_a_push_once(
    database_url: str, lab: Lab, redis_server: RedisServer, clients: list[Client]
) -> None:
    """With Redis, a tab on node A and one on node B (connection ids registered through B) each
    get the message that B's worker delivers, once, and both are recorded."""
    settings = gateway_settings(database_url, lab, PUSHGATE_REDIS_URL=redis_server.url)
    async with running_gateway(settings) as a, running_gateway(settings) as b:
        tabs = [Client(), Client()]
        clients.extend(tabs)
        await tabs[0].open(a, "nodes-user", await _register(b, "nodes-user"))
        await tabs[1].open(b, "nodes-user", await _register(b, "nodes-user"))
        await wait_for(lambda: _has_sessions(a, "nodes-user", 2), 10, "both tabs on both nodes")
        pid = await _push(b, "nodes-user")
        done = await b.wait_done(pid)
        await wait_for(lambda: all(t.messages for t in tabs), 10, "the message on both nodes")
        assert [t.messages for t in tabs] == [[README_MESSAGE["message"]]] * 2
        assert done["by_provider"]["realtime"]["sent"] == 2, done
        for t in tabs:
            await t.close()


async def test_a_wrong_connection_id_is_disconnected_and_never_receives(
    gateway: Gateway, clients: list[Client]
) -> None:
    good = await _register(gateway, "wrong-user")
    cases = [
        ("wrong-user", str(uuid.uuid4())),  # never registered
        ("someone-else", good),  # another user's id
        ("wrong-user", good.upper()),
        ("wrong-user",),  # not (userId, connectionId)
        ({"user": "wrong-user"}, good),
    ]
    for args in cases:
        c = Client()
        clients.append(c)
        await c.sio.connect(gateway.url, transports=["websocket"], wait_timeout=5)
        await c.sio.emit("register", args)
        await asyncio.wait_for(c.closed.wait(), 10)
    assert await _presence(gateway, "wrong-user") == 0
    pid = await _push(gateway, "wrong-user")
    done = await gateway.wait_done(pid)
    assert done["skipped_by_reason"] == {"offline": 1}, done
    assert all(c.messages == [] for c in clients)


async def test_a_repeated_register_counts_once(
    database_url: str, lab: Lab, redis_server: RedisServer, clients: list[Client]
) -> None:
    """With Redis, presence is a counter each register adds to: a session that registers three
    times counts once (the later ones are ignored), and its close takes it back to 0."""
    settings = gateway_settings(database_url, lab, PUSHGATE_REDIS_URL=redis_server.url)
    async with running_gateway(settings) as gw:
        c = Client()
        clients.append(c)
        connection_id = await _register(gw, "twice-user")
        await c.sio.connect(gw.url, transports=["websocket"], wait_timeout=5)
        for _ in range(3):
            await c.sio.emit("register", ("twice-user", connection_id))
        await wait_for(lambda: _has_sessions(gw, "twice-user", 1), 10, "the session registered")
        await gw.wait_done(await _push(gw, "twice-user"))
        await wait_for(lambda: c.messages, 10, "the message")
        assert c.sio.connected and await _presence(gw, "twice-user") == 1
        assert c.messages == [README_MESSAGE["message"]]
        await c.close()
        await wait_for(lambda: _has_sessions(gw, "twice-user", 0), 10, "the session closed")


async def test_a_pending_session_that_does_not_register_is_disconnected(
    gateway: Gateway, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(foreign, "REGISTER_TIMEOUT_SECONDS", 0.3)
    c = Client()
    clients.append(c)
    await c.sio.connect(gateway.url, transports=["websocket"], wait_timeout=5)
    assert c.sio.connected
    await asyncio.wait_for(c.closed.wait(), 10)
    # A handshake that names a token is pushgate's own, and a missing one is refused as ever.
    sio = socketio.AsyncClient(reconnection=False)
    why: list[Any] = []
    sio.on("connect_error", why.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(gateway.url, auth={"token": None}, transports=["websocket"], wait_timeout=5)
    assert why and "missing token" in str(why[0]), why


async def test_an_offline_user_is_recorded_offline(gateway: Gateway) -> None:
    pid = await _push(gateway, "nobody-home")
    done = await gateway.wait_done(pid)
    assert done["status"] == "completed" and done["skipped_by_reason"] == {"offline": 1}, done


async def test_status_routes_answer_as_the_original(gateway: Gateway) -> None:
    ping = await _rest(gateway, "GET", "/api/status/ping", headers={})
    assert (ping.status_code, ping.text) == (200, "pong")
    assert ping.headers["content-type"].startswith("text/html")
    info = await _rest(gateway, "GET", "/api/status/info", headers={})
    assert info.status_code == 200 and info.json() == {"name": "socket.io-server", "version": "1.0.0"}
    assert info.headers["content-type"].startswith("application/json")


async def test_auth_errors(gateway: Gateway) -> None:
    for headers in ({}, {"X-AUTH-TOKEN": "not-the-key"}, {"Authorization": f"Bearer {gateway.key}"}):
        calls: list[tuple[str, str, dict[str, Any]]] = [
            ("PUT", "/api/u1/register", {"params": {"connectionId": "c1"}}),
            ("POST", "/api/u1/push", {"json": README_MESSAGE}),
        ]
        for method, path, kw in calls:
            r = await _rest(gateway, method, path, headers=headers, **kw)
            assert (r.status_code, r.content) == (401, b""), (headers, path, r.text)
            assert r.headers["X-Pushgate-Error"]
    r = await gateway.client.post("/v1/keys", json={"name": "reader", "scopes": ["read"]})
    reader = {"X-AUTH-TOKEN": r.json()["secret"]}
    r = await _rest(gateway, "POST", "/api/u1/push", headers=reader, json=README_MESSAGE)
    assert r.status_code == 403 and "publish scope" in r.text, r.text
    r = await _rest(gateway, "PUT", "/api/u1/register", headers=reader, params={"connectionId": "c"})
    assert r.status_code == 403 and "register scope" in r.text, r.text


@pytest.mark.parametrize(
    "query",
    [{}, {"connectionId": ""}, {"connectionId": ["a", "b"]}, {"connectionId": "x" * 201}],
)
async def test_register_bad_input(gateway: Gateway, query: dict[str, Any]) -> None:
    r = await _rest(gateway, "PUT", "/api/u1/register", params=query)
    assert (r.status_code, r.text) == (400, "Bad Request"), query
    assert "connectionId" in r.headers["X-Pushgate-Error"]
    r = await _rest(gateway, "PUT", f"/api/{'u' * 201}/register", params={"connectionId": "c"})
    assert (r.status_code, r.text) == (400, "Bad Request")


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1]", b"{}", b'{"message": null}', b'{"message": ""}', b'{"message": 0}',
     b'{"message": false}', b'{"msg": {"title": "t"}}', b'{"message": {"a": 1}'],
)  # fmt: skip
async def test_push_bad_input(gateway: Gateway, body: bytes) -> None:
    headers = {**_auth(gateway), "Content-Type": "application/json"}
    r = await _rest(gateway, "POST", "/api/u1/push", headers=headers, content=body)
    assert (r.status_code, r.text) == (400, "Bad Request"), body
    assert r.headers["X-Pushgate-Error"]
    assert "X-Pushgate-Publish-Id" not in r.headers


@pytest.mark.parametrize("message", [{}, [], 1, True, "x"])
async def test_push_takes_any_truthy_message(gateway: Gateway, message: Any) -> None:
    """The original's ``if (userId && req.body.message)``: JavaScript's truth."""
    await _push(gateway, "truthy-user", {"message": message})


async def test_forged_registers_count_in_the_wrong_credential_throttle(
    database_url: str, lab: Lab, clients: list[Client]
) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_AUTH_MAX_FAILURES="3")
    async with running_gateway(settings) as gw:
        good = await _register(gw, "throttled")
        for _ in range(3):
            c = Client()
            clients.append(c)
            await c.open(gw, "throttled", str(uuid.uuid4()))
            await asyncio.wait_for(c.closed.wait(), 10)
        # The address is blocked: its next handshake is refused before it can register, and the
        # API refuses it too (one throttle), though the connection id is right.
        c = Client()
        clients.append(c)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await c.open(gw, "throttled", good)
        r = await _rest(gw, "POST", "/api/throttled/push", json=README_MESSAGE)
        assert r.status_code == 429 and r.headers["Retry-After"], r.text


async def test_tokenless_handshakes_are_refused_when_the_front_end_is_off(
    database_url: str, lab: Lab
) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_COMPAT_NOTIFICATION_SOCKETIO_ENABLED="false")
    async with running_gateway(settings) as gw:
        sio = socketio.AsyncClient(reconnection=False)
        why: list[Any] = []
        sio.on("connect_error", why.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(gw.url, transports=["websocket"], wait_timeout=5)
        assert why and "missing token" in str(why[0]), why
        r = await _rest(gw, "POST", "/api/u1/push", json=README_MESSAGE)
        assert r.status_code in (404, 405), r.text


async def test_push_needs_the_realtime_gateway(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_REALTIME_ENABLED="false")
    async with running_gateway(settings) as gw:
        r = await _rest(gw, "POST", "/api/u1/push", json=README_MESSAGE)
        assert r.status_code == 409 and "[realtime] enabled = false" in r.text, r.text
        r = await _rest(gw, "PUT", "/api/u1/register", params={"connectionId": "c1"})
        assert r.status_code == 409 and "[realtime] enabled = false" in r.text, r.text


async def test_the_npm_client_runs_the_readme_javascript(gateway: Gateway) -> None:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("node or tests/js/node_modules missing: run `bash scripts/ensure-node.sh`")
    connection_id = await _register(gateway, "js-user")
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        node, str(JS / "nsio.mjs"), gateway.url, "js-user", connection_id, stdin=pipe, stdout=pipe
    )
    assert proc.stdin is not None and proc.stdout is not None

    async def line() -> dict[str, Any]:
        assert proc.stdout is not None
        raw = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert raw, "the node client ended without a word"
        return dict(json.loads(raw))

    try:
        assert await line() == {"event": "registered"}
        await wait_for(lambda: _has_sessions(gateway, "js-user", 1), 10, "the JS session")
        await _push(gateway, "js-user")
        assert await line() == {"event": "message", "msg": README_MESSAGE["message"]}
    finally:
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_a_message_over_a_providers_size_limit_is_refused_whole(gateway: Gateway) -> None:
    """Admission checks a publish against every provider the app could reach (docs/compat.md):
    a message over APNs' 4 KB is a 400 naming the limit, and nothing is stored."""
    r = await _rest(gateway, "POST", "/api/big-user/push", json={"message": {"text": "x" * 5000}})
    assert (r.status_code, r.text) == (400, "Bad Request")
    assert "4096-byte limit" in r.headers["X-Pushgate-Error"]
    listed = await gateway.client.get("/v1/publishes")
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text
