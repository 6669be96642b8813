"""Nothing one request does freezes the process (issue 9, item 6).

A user's channel bindings land on every device of the user, so one small request can expand into
a million rows. With SQLite on the event loop's thread, one such statement froze ``/healthz`` and
every other app for 13 s. These tests drive the real gateway over HTTP on both databases and
check the three defences: statements of bounded size with the loop running between them, a cap
on the rows one request may change, and the channels-per-device cap on every route that adds
channels.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from support.api import fcm_token, paged, register
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab

from pushgate.store import memberships

pytestmark = pytest.mark.timeout(180)


def _devices(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"provider": "fcm", "platform": "android", "token": fcm_token(), **fields} for _ in range(n)]


async def _batch(client: httpx.AsyncClient, items: list[dict[str, Any]]) -> httpx.Response:
    return await client.post("/v1/devices/batch", json={"devices": items})


async def _user_with_devices(client: httpx.AsyncClient, user: str, n: int) -> None:
    for k in range(0, n, 1000):
        r = await _batch(client, _devices(min(1000, n - k), user=user))
        assert r.status_code == 200, r.text


async def _bind(client: httpx.AsyncClient, user: str, op: str, channels: list[str]) -> httpx.Response:
    return await client.post(f"/v1/users/{user}/channels", json={"op": op, "channels": channels})


async def _bound(client: httpx.AsyncClient, user: str) -> list[str]:
    return [b["channel"] for b in await paged(client, "/v1/user-channels", users=user)]


async def _channel_size(client: httpx.AsyncClient, channel: str) -> int:
    items = (await client.get("/v1/channels", params={"prefix": channel})).json()["items"]
    return next((c["devices"] for c in items if c["channel"] == channel), 0)


class LoopProbe:
    """Ticks on the event loop the gateway shares with the test and keeps the longest gap
    between two ticks: how long the loop (every request of every app) was held."""

    def __init__(self, tick: float = 0.005) -> None:
        self.tick = tick
        self.longest = 0.0
        self.ticks = 0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self.tick)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - self.tick)
            self.ticks += 1
            last = now


@asynccontextmanager
async def probing() -> AsyncIterator[LoopProbe]:
    """A :class:`LoopProbe` running while the block runs. The cyclic garbage collector is off
    meanwhile: its pauses (up to a quarter of a second with the test's heap) are the
    interpreter's, not the database's, and ``pushgate serve`` raises its thresholds anyway
    (``runtime.tune_gc``)."""
    probe = LoopProbe()
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.02)
    gc.disable()
    try:
        yield probe
    finally:
        gc.enable()
        task.cancel()


@contextmanager
def statements(gw: Gateway, table: str) -> Iterator[list[tuple[int, float]]]:
    """(rows, seconds) of every statement that writes ``table`` while the block runs."""
    engine = gw.app.state.services.db.engine.sync_engine
    seen: list[tuple[int, float]] = []

    def before(conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        conn.info["pg_started"] = time.perf_counter()

    def after(conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        head = sql.lstrip().upper()
        if head.startswith(("INSERT", "DELETE")) and table.upper() in head.split("WHERE")[0]:
            seen.append((len(params) if many else 1, time.perf_counter() - conn.info["pg_started"]))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


# ---- the reproduction: a large binding no longer blocks --------------------------------------


async def test_binding_many_channels_to_a_user_with_many_devices_never_blocks_the_loop(
    database_url: str, lab: Lab
) -> None:
    """100 channels bound to a user with 1,000 devices is 100,000 memberships (the limit is
    raised to allow it). Before, each statement wrote 500 devices' worth (50,000 rows) and the
    whole change ran without yielding: the loop stood still for 0.6 s (3 s on a loaded machine
    with 150 channels). Now no statement writes more than ``memberships.ROWS`` rows and the loop
    runs between them, so ``/healthz`` keeps answering. The bound on the longest gap is
    generous: what remains is the commit, which includes SQLite's WAL checkpoint (tens of
    milliseconds for this transaction, several times that on a loaded machine)."""
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_LIMITS_MAX_ROWS_PER_REQUEST="150000")
    async with running_gateway(settings) as gw:
        await _user_with_devices(gw.client, "alice", 1000)
        channels = [f"news-{i:03d}" for i in range(100)]
        with statements(gw, "device_channels") as seen:
            async with probing() as probe:
                bind = asyncio.create_task(_bind(gw.client, "alice", "add", channels))
                health = 0
                while not bind.done():
                    r = await gw.client.get("/healthz")
                    health += r.status_code == 200
                r = await bind
        assert r.status_code == 200, r.text
        assert await _channel_size(gw.client, "news-099") == 1000
        rows = [n for n, _ in seen]
        assert sum(rows) == 100_000 and max(rows) <= memberships.ROWS, max(rows)
        assert probe.ticks > 10 and probe.longest < 0.5, f"the loop stood still for {probe.longest:.3f} s"
        assert health >= 2, "/healthz was not answered while the binding ran"
        if gw.app.state.services.db.dialect == "sqlite":
            # The statements run on the loop's thread: each must be short.
            assert max(t for _, t in seen) < 0.1, max(t for _, t in seen)


async def test_the_reproduced_binding_is_refused_before_it_writes(gateway: Gateway) -> None:
    """1,000 channels for a user with 1,000 devices (a million rows) is over the default
    ``limits.max_rows_per_request``: a 400 that names the setting, at once, with nothing bound;
    the same change in smaller requests goes through."""
    await _user_with_devices(gateway.client, "alice", 1000)
    channels = [f"c{i}" for i in range(1000)]
    started = time.perf_counter()
    r = await _bind(gateway.client, "alice", "add", channels)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request"
    assert "limits.max_rows_per_request" in error["message"] and "1,001,000 rows" in error["message"]
    assert error["details"]["limit"] == 50_000
    assert time.perf_counter() - started < 5  # refused before writing, not after a million rows
    assert await _bound(gateway.client, "alice") == []
    r = await _bind(gateway.client, "alice", "add", channels[:40])
    assert r.status_code == 200, r.text
    assert await _channel_size(gateway.client, "c39") == 1000


# ---- the rows-per-request cap on every path that expands ----------------------------------------


@pytest.fixture
async def small_rows(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    """A gateway whose requests may change at most 30 rows."""
    lab.reset()
    async with running_gateway(
        gateway_settings(database_url, lab, PUSHGATE_LIMITS_MAX_ROWS_PER_REQUEST="30")
    ) as gw:
        yield gw


def _over_rows(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert "limits.max_rows_per_request" in r.json()["error"]["message"], r.text


async def test_rows_cap_holds_for_batch_registration(small_rows: Gateway) -> None:
    r = await _batch(small_rows.client, _devices(10, channels=["a", "b", "c"]))  # 40 rows
    _over_rows(r)
    assert await paged(small_rows.client, "/v1/devices") == []
    r = await _batch(small_rows.client, _devices(5, channels=["a", "b", "c"]))  # 20 rows
    assert r.status_code == 200, r.text


async def test_rows_cap_holds_for_registration_through_a_users_bindings(small_rows: Gateway) -> None:
    """Registering into a user whose bindings expand past the cap: counted while writing."""
    await _user_with_devices(small_rows.client, "bob", 1)
    assert (await _bind(small_rows.client, "bob", "add", [f"b{i}" for i in range(10)])).status_code == 200
    r = await _batch(small_rows.client, _devices(5, user="bob"))  # 5 devices + 50 bound memberships
    _over_rows(r)
    assert len(await paged(small_rows.client, "/v1/devices")) == 1


async def test_rows_cap_holds_for_user_bindings(small_rows: Gateway) -> None:
    await _user_with_devices(small_rows.client, "carol", 10)
    _over_rows(await _bind(small_rows.client, "carol", "add", ["x", "y", "z"]))  # 3 x (10 + 1)
    assert await _bound(small_rows.client, "carol") == []
    assert (await _bind(small_rows.client, "carol", "add", ["x", "y"])).status_code == 200


async def test_rows_cap_holds_for_bulk_updates(small_rows: Gateway) -> None:
    await _user_with_devices(small_rows.client, "dave", 10)
    add = {"users": ["dave"], "channels_update": {"op": "add", "channels": ["p", "q", "r"]}}  # 10 x 4
    _over_rows(await small_rows.client.post("/v1/devices/update", json=add))
    tags = {"users": ["dave"], "tags_update": {"tags": {"k1": "v", "k2": "v", "k3": "v"}}}
    _over_rows(await small_rows.client.post("/v1/devices/update", json=tags))
    assert await _channel_size(small_rows.client, "p") == 0
    ok = {"users": ["dave"], "channels_update": {"op": "add", "channels": ["p"]}}
    assert (await small_rows.client.post("/v1/devices/update", json=ok)).status_code == 200
    assert await _channel_size(small_rows.client, "p") == 10
    # A removal counts what it deletes, not what it names: these devices hold one of the three.
    drop = {"users": ["dave"], "channels_update": {"op": "remove", "channels": ["p", "q", "r"]}}
    r = await small_rows.client.post("/v1/devices/update", json=drop)
    assert r.status_code == 200, r.text
    assert await _channel_size(small_rows.client, "p") == 0


async def test_rows_cap_holds_for_bulk_removal(small_rows: Gateway) -> None:
    """Removing devices deletes their channels and tags too: all of it counts."""
    c = small_rows.client
    await _user_with_devices(c, "erin", 10)
    tags = {"users": ["erin"], "tags_update": {"tags": {"k": "v"}}}
    assert (await c.post("/v1/devices/update", json=tags)).status_code == 200
    add = {"users": ["erin"], "channels_update": {"op": "add", "channels": ["p", "q"]}}
    assert (await c.post("/v1/devices/update", json=add)).status_code == 200
    _over_rows(await c.post("/v1/devices/remove", json={"users": ["erin"]}))  # 10 + 10 + 20 rows
    devices = await paged(c, "/v1/devices")
    assert len(devices) == 10 and await _channel_size(c, "q") == 10
    r = await c.post("/v1/devices/remove", json={"ids": [d["id"] for d in devices[:5]]})  # 20 rows
    assert r.status_code == 200 and r.json()["matched"] == 5, r.text


async def test_rows_cap_refuses_a_filter_that_matches_more_devices(small_rows: Gateway) -> None:
    """A filter by users has no bound of its own: more matches than the limit are refused
    without reading them all."""
    c = small_rows.client
    for _ in range(2):
        await _user_with_devices(c, "frank", 20)
    with statements(small_rows, "devices") as seen:
        r = await c.post("/v1/devices/remove", json={"users": ["frank"]})
    _over_rows(r)
    assert seen == [], "devices were deleted (and rolled back) before the refusal"
    assert "more than 30 rows" in r.json()["error"]["message"]
    assert len(await paged(c, "/v1/devices")) == 40


# ---- channels per device on every path ------------------------------------------------------


@pytest.fixture
async def five_channels(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    """A gateway whose devices may be in at most 5 channels."""
    lab.reset()
    async with running_gateway(
        gateway_settings(database_url, lab, PUSHGATE_LIMITS_MAX_CHANNELS_PER_DEVICE="5")
    ) as gw:
        yield gw


def _over_channels(r: httpx.Response, count: int) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "limits.max_channels_per_device" in error["message"], r.text
    assert error["details"] == {"setting": "limits.max_channels_per_device", "limit": 5, "requested": count}


def _chans(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


async def _device_channels(client: httpx.AsyncClient, device_id: str) -> list[str]:
    return list((await client.get(f"/v1/devices/{device_id}")).json()["device"].get("channels", []))


async def test_channels_cap_holds_for_registration(five_channels: Gateway) -> None:
    c = five_channels.client
    _over_channels(
        await c.post(
            "/v1/devices",
            json={"provider": "fcm", "platform": "android", "token": "t1", "channels": _chans("a", 6)},
        ),
        6,
    )
    assert await paged(c, "/v1/devices") == []


async def test_channels_cap_counts_a_users_bound_channels_at_registration(five_channels: Gateway) -> None:
    c = five_channels.client
    assert (await _bind(c, "bob", "add", _chans("bound", 3))).status_code == 200
    body = {
        "provider": "fcm",
        "platform": "android",
        "token": "t2",
        "user": "bob",
        "channels": _chans("own", 3),
    }
    _over_channels(await c.post("/v1/devices", json=body), 6)
    assert await paged(c, "/v1/devices") == []


async def test_channels_cap_holds_for_batch_registration(five_channels: Gateway) -> None:
    c = five_channels.client
    items = [*_devices(2, channels=["x"]), *_devices(1, channels=_chans("a", 6))]
    _over_channels(await _batch(c, items), 6)
    assert await paged(c, "/v1/devices") == []


async def test_channels_cap_holds_for_patch(five_channels: Gateway) -> None:
    c = five_channels.client
    dev = await register(c, provider="fcm", platform="android", token="t3", channels=["x"])
    _over_channels(await c.patch(f"/v1/devices/{dev['id']}", json={"channels": _chans("a", 6)}), 6)
    assert await _device_channels(c, dev["id"]) == ["x"]


async def test_channels_cap_holds_for_subscribe(five_channels: Gateway) -> None:
    c = five_channels.client
    dev = await register(c, provider="fcm", platform="android", token="t4", channels=_chans("a", 5))
    _over_channels(await c.put(f"/v1/devices/{dev['id']}/channels/one-more"), 6)
    assert await _device_channels(c, dev["id"]) == _chans("a", 5)
    assert (await c.put(f"/v1/devices/{dev['id']}/channels/a0")).status_code == 204  # already in it


async def test_channels_cap_holds_for_bulk_channel_updates(five_channels: Gateway) -> None:
    c = five_channels.client
    dev = await register(c, provider="fcm", platform="android", token="t5", user="u", channels=_chans("a", 4))
    add = {"ids": [dev["id"]], "channels_update": {"op": "add", "channels": ["b0", "b1"]}}
    _over_channels(await c.post("/v1/devices/update", json=add), 6)
    assert (await _bind(c, "u", "add", ["bound"])).status_code == 200  # now 5
    put = {"ids": [dev["id"]], "channels_update": {"op": "set", "channels": _chans("s", 5)}}
    _over_channels(await c.post("/v1/devices/update", json=put), 6)  # 5 + the bound one
    assert await _device_channels(c, dev["id"]) == sorted([*_chans("a", 4), "bound"])


async def test_channels_cap_holds_when_a_device_moves_to_another_user(five_channels: Gateway) -> None:
    c = five_channels.client
    dev = await register(c, provider="fcm", platform="android", token="t6", channels=_chans("a", 3))
    assert (await _bind(c, "rich", "add", _chans("r", 3))).status_code == 200
    move = {"ids": [dev["id"]], "user_update": {"user": "rich"}}
    _over_channels(await c.post("/v1/devices/update", json=move), 6)
    assert (await c.get(f"/v1/devices/{dev['id']}")).json()["device"].get("user") is None


async def test_channels_cap_holds_for_user_bindings(five_channels: Gateway) -> None:
    c = five_channels.client
    r = await _bind(c, "many", "add", _chans("m", 6))
    assert r.status_code == 400 and "user 'many' would be bound to 6 channels" in r.json()["error"]["message"]
    dev = await register(
        c, provider="fcm", platform="android", token="t7", user="dana", channels=_chans("a", 3)
    )
    _over_channels(await _bind(c, "dana", "add", _chans("d", 3)), 6)  # 3 bound is fine for the user
    assert await _bound(c, "dana") == []
    assert await _device_channels(c, dev["id"]) == _chans("a", 3)
