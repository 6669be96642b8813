"""The device registry API: listing filters, pagination, bulk update and remove, channels."""

from __future__ import annotations

import json
from typing import Any

from support.api import fcm_token, publish, register
from support.gateway import Gateway
from support.lab import Lab


async def list_all(gw: Gateway, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = {**params, **({"cursor": cursor} if cursor else {})}
        body = (await gw.client.get(path, params=q)).json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_register_same_token_updates_and_keeps_id(gateway: Gateway, lab: Lab) -> None:
    token = fcm_token()
    first = await register(gateway, provider="fcm", token=token, platform="android", meta={"app": "1.0"})
    second = await register(
        gateway, provider="fcm", token=token, platform="android", meta={"app": "1.1"}, locale="de"
    )
    assert second["id"] == first["id"]
    assert second["meta"] == {"app": "1.1"} and second["locale"] == "de"
    assert second["created_at"] == first["created_at"] and second["updated_at"] >= first["updated_at"]
    # The same Web Push endpoint is the same device, whether given as object or JSON string.
    sub = lab.subscription()
    w1 = await register(gateway, provider="webpush", token=sub, platform="web")
    w2 = await register(gateway, provider="webpush", token=json.dumps(sub), platform="web")
    assert w1["id"] == w2["id"]
    # Updating by id; another device's token is a conflict.
    other = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    r = await gateway.client.post(
        "/v1/devices", json={"id": other["id"], "provider": "fcm", "token": token, "platform": "android"}
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    new_token = fcm_token()
    r = await gateway.client.post(
        "/v1/devices", json={"id": other["id"], "provider": "fcm", "token": new_token, "platform": "android"}
    )
    assert r.status_code == 200 and r.json()["device"]["token"] == new_token


async def test_list_filters_include_and_pagination(gateway: Gateway, lab: Lab) -> None:
    a = await register(
        gateway, provider="fcm", token=fcm_token(), platform="android", user="ann", tags={"tier": "gold"},
        channels=["news"], meta={"m": "1"},
    )  # fmt: skip
    b = await register(
        gateway, provider="fcm", token=fcm_token(), platform="ios", user="bob", tags={"tier": "free"}
    )
    c = await register(gateway, provider="webpush", token=lab.subscription(), platform="web", user="ann")
    everyone = await list_all(gateway, "/v1/devices", limit=1)
    assert [d["id"] for d in everyone] == sorted([a["id"], b["id"], c["id"]])
    assert all("meta" not in d and "tags" not in d and "channels" not in d for d in everyone)

    async def ids(**params: Any) -> set[str]:
        return {d["id"] for d in await list_all(gateway, "/v1/devices", **params)}

    assert await ids(users="ann") == {a["id"], c["id"]}
    assert await ids(users=["ann", "bob"]) == {a["id"], b["id"], c["id"]}
    assert await ids(providers="webpush") == {c["id"]}
    assert await ids(platforms="ios,web") == {b["id"], c["id"]}
    assert await ids(channels="news") == {a["id"]}
    assert await ids(**{"tag.tier": "gold"}) == {a["id"]}
    assert await ids(users="ann", providers="fcm") == {a["id"]}
    assert await ids(ids=f"{a['id']},{b['id']}") == {a["id"], b["id"]}
    assert await ids(status="invalid") == set()
    [full] = await list_all(gateway, "/v1/devices", ids=a["id"], include="meta,tags,channels")
    assert full["meta"] == {"m": "1"} and full["tags"] == {"tier": "gold"} and full["channels"] == ["news"]


async def test_bulk_update_and_remove(gateway: Gateway) -> None:
    devs = [
        await register(
            gateway, provider="fcm", token=fcm_token(), platform="android", user="u", channels=["x"]
        )
        for _ in range(3)
    ]
    other = await register(gateway, provider="fcm", token=fcm_token(), platform="android", user="v")
    r = await gateway.client.post(
        "/v1/devices/update",
        json={
            "users": ["u"],
            "meta_update": {"meta": {"k": "v"}},
            "tags_update": {"tags": {"plan": "pro"}},
            "channels_update": {"op": "add", "channels": ["y", "z"]},
        },
    )
    assert r.json() == {"matched": 3}
    for d in devs:
        got = (await gateway.client.get(f"/v1/devices/{d['id']}")).json()["device"]
        assert (
            got["meta"] == {"k": "v"}
            and got["tags"] == {"plan": "pro"}
            and got["channels"] == ["x", "y", "z"]
        )
    untouched = (await gateway.client.get(f"/v1/devices/{other['id']}")).json()["device"]
    assert untouched["channels"] == [] and untouched["tags"] == {}

    await gateway.client.post(
        "/v1/devices/update",
        json={"ids": [devs[0]["id"]], "channels_update": {"op": "remove", "channels": ["x", "y"]}},
    )
    assert (await gateway.client.get(f"/v1/devices/{devs[0]['id']}")).json()["device"]["channels"] == ["z"]
    await gateway.client.post(
        "/v1/devices/update",
        json={"ids": [devs[1]["id"]], "channels_update": {"op": "set", "channels": ["only"]}},
    )
    assert (await gateway.client.get(f"/v1/devices/{devs[1]['id']}")).json()["device"]["channels"] == ["only"]

    # Filters narrow each other: users=u AND this token.
    r = await gateway.client.post(
        "/v1/devices/remove",
        json={"users": ["u"], "provider_tokens": [{"provider": "fcm", "token": devs[2]["token"]}]},
    )
    assert r.json() == {"matched": 1}
    assert (await gateway.client.get(f"/v1/devices/{devs[2]['id']}")).status_code == 404
    r = await gateway.client.delete(f"/v1/devices/{devs[0]['id']}")
    assert r.status_code == 204
    remaining = {d["id"] for d in await list_all(gateway, "/v1/devices")}
    assert remaining == {devs[1]["id"], other["id"]}
    channels = (await gateway.client.get("/v1/channels")).json()["items"]
    assert channels == [{"channel": "only", "devices": 1}]


async def test_channel_routes(gateway: Gateway) -> None:
    devs = [await register(gateway, provider="fcm", token=fcm_token(), platform="android") for _ in range(3)]
    for d in devs:
        assert (await gateway.client.put(f"/v1/devices/{d['id']}/channels/sports")).status_code == 204
    await gateway.client.put(f"/v1/devices/{devs[0]['id']}/channels/chess")
    members = await list_all(gateway, "/v1/channels/sports/devices", limit=2)
    assert [m["id"] for m in members] == sorted(d["id"] for d in devs)
    chans = await list_all(gateway, "/v1/channels", limit=1)
    assert chans == [{"channel": "chess", "devices": 1}, {"channel": "sports", "devices": 3}]
    assert (await gateway.client.delete(f"/v1/devices/{devs[0]['id']}/channels/sports")).status_code == 204
    assert len(await list_all(gateway, "/v1/channels/sports/devices")) == 2
    assert (await gateway.client.get("/v1/channels", params={"prefix": "ch"})).json()["items"] == [
        {"channel": "chess", "devices": 1}
    ]


async def test_publishes_list_newest_first_and_delivery_filters(gateway: Gateway, lab: Lab) -> None:
    f = await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["n"])
    w = await register(gateway, provider="webpush", token=lab.subscription(), platform="web", channels=["n"])
    lab.fault(provider="fcm", tokens=[f["token"]], error="unregistered")
    ids = [await publish(gateway.client, recipients=[{"type": "channel", "channel": "n"}]) for _ in range(3)]
    for pid in ids:
        await gateway.wait_done(pid)
    listed = await list_all(gateway, "/v1/publishes", limit=2)
    assert [p["id"] for p in listed] == list(reversed(ids))
    first = ids[0]
    sent = (await gateway.client.get(f"/v1/publishes/{first}/deliveries", params={"status": "sent"})).json()
    assert [d["device_id"] for d in sent["items"]] == [w["id"]]
    bad = (await gateway.client.get(f"/v1/publishes/{first}/deliveries", params={"provider": "fcm"})).json()
    assert [(d["device_id"], d["status"]) for d in bad["items"]] == [(f["id"], "invalid_token")]
    status = (await gateway.client.get(f"/v1/publishes/{first}")).json()
    assert (
        status["by_provider"]["fcm"]["invalid_token"] == 1 and status["by_provider"]["webpush"]["sent"] == 1
    )
