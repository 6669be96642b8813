"""Every list route pages with opaque cursors it validates: a cursor it did not hand out is a 400
that names ``cursor`` (never a silent restart, never a 500), and the cursors it hands out walk
the whole list exactly once."""

from __future__ import annotations

import base64

import pytest
from support.api import fcm_token, paged, publish, register, wait_final
from support.gateway import Gateway

#: Every cursor-paginated route (a publish id is filled in per test).
ROUTES = (
    "/v1/devices",
    "/v1/channels",
    "/v1/channels/walk/devices",
    "/v1/user-channels",
    "/v1/publishes",
    "/v1/publishes/{pub}/deliveries",
    "/v1/dead-letters",
)
CRAFTED = (
    "garbage",
    "dev_660e91e297a95647f69713986",  # a raw key, which the old device cursors were
    "[" * 5000,  # once a RecursionError (500) in the user-channels route
    base64.urlsafe_b64encode(b"[" * 5000).decode(),
    base64.urlsafe_b64encode(b'["a", "b", "c"]').decode(),
    "A" * 5000,
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_cursors_not_handed_out_are_refused_on_every_list_route(gateway: Gateway) -> None:
    dev = await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["walk"])
    pub = await publish(gateway.client, recipients=[{"type": "device", "device_id": dev["id"]}])
    await wait_final(gateway.client, pub, within=30)
    for route in ROUTES:
        path = route.format(pub=pub)
        for cursor in CRAFTED:
            r = await gateway.client.get(path, params={"cursor": cursor})
            assert r.status_code == 400, (path, cursor[:20], r.status_code, r.text[:200])
            assert r.json()["error"]["message"].startswith("cursor:"), (path, r.text[:200])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_handed_out_cursors_walk_every_list_once(gateway: Gateway) -> None:
    tokens = [fcm_token() for _ in range(7)]
    for i, token in enumerate(tokens):
        await register(
            gateway, provider="fcm", token=token, platform="android", channels=[f"page{i}", "pages"]
        )
    for user, channel in [("u1", "c1"), ("u1", "c2"), ("u2", "c1")]:
        r = await gateway.client.post(f"/v1/users/{user}/channels", json={"op": "add", "channels": [channel]})
        assert r.status_code < 300, r.text
    devices = await paged(gateway.client, "/v1/channels/pages/devices", limit=2)
    assert sorted(d["token"] for d in devices) == sorted(tokens)
    channels = [c["channel"] for c in await paged(gateway.client, "/v1/channels", prefix="page", limit=3)]
    assert channels == sorted({*(f"page{i}" for i in range(7)), "pages"})
    bindings = await paged(gateway.client, "/v1/user-channels", users="u1,u2", limit=1)
    assert [(b["user"], b["channel"]) for b in bindings] == [("u1", "c1"), ("u1", "c2"), ("u2", "c1")]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_tag_filters_are_capped(gateway: Gateway) -> None:
    """A thousand ``tag.*`` filters once passed SQLite's expression depth: a 500."""
    r = await gateway.client.get("/v1/devices", params={f"tag.t{i}": "x" for i in range(1000)})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("tag.*:"), r.text[:200]
    r = await gateway.client.get("/v1/devices", params={f"tag.t{i}": "x" for i in range(20)})
    assert r.status_code == 200, r.text[:200]
