"""``POST /v1/devices/batch`` through HTTP, on SQLite and PostgreSQL: the same meaning as
``POST /v1/devices`` item by item, one transaction, all or nothing."""

from __future__ import annotations

from typing import Any

from support.api import device as api_device
from support.api import fcm_token, paged, publish, register
from support.gateway import Gateway
from support.lab import Lab


async def batch(gw: Gateway, devices: list[dict[str, Any]], status: int = 200) -> dict[str, Any]:
    r = await gw.client.post("/v1/devices/batch", json={"devices": devices})
    assert r.status_code == status, r.text
    return dict(r.json())


async def device(gw: Gateway, dev_id: str) -> dict[str, Any]:
    return await api_device(gw.client, dev_id)


async def count_devices(gw: Gateway) -> int:
    return len(await paged(gw.client, "/v1/devices"))


async def test_batch_registers_and_updates_like_the_single_route(gateway: Gateway, lab: Lab) -> None:
    # A user binding is applied to the batch's devices as registration applies it.
    r = await gateway.client.post("/v1/users/carol/channels", json={"op": "add", "channels": ["vip"]})
    assert r.status_code == 200, r.text
    tokens = [fcm_token() for _ in range(3)]
    sub = lab.subscription()
    fcm = {"provider": "fcm", "platform": "android"}
    items: list[dict[str, Any]] = [
        {**fcm, "token": tokens[0], "channels": ["orders"], "tags": {"t": "1"}},
        {**fcm, "platform": "ios", "token": tokens[1], "user": "carol", "meta": {"v": "2"}},
        {"provider": "webpush", "platform": "web", "token": sub, "channels": ["orders", "web"]},
        {"provider": "apns", "platform": "ios", "token": "ab" * 32, "environment": "sandbox", "locale": "de"},
        {**fcm, "token": tokens[2], "timezone": "Europe/Berlin"},
    ]
    first = await batch(gateway, items)
    assert first["created"] == 5 and first["updated"] == 0
    ids = [d["id"] for d in first["devices"]]
    assert all(d["created"] for d in first["devices"]) and len(set(ids)) == 5
    d0, d1, d2, d3, d4 = [await device(gateway, i) for i in ids]
    assert d0["token"] == tokens[0] and d0["channels"] == ["orders"] and d0["tags"] == {"t": "1"}
    assert d1["user"] == "carol" and d1["channels"] == ["vip"] and d1["meta"] == {"v": "2"}
    assert d2["provider"] == "webpush" and d2["channels"] == ["orders", "web"]
    assert d3["environment"] == "sandbox" and d3["locale"] == "de"
    assert d4["timezone"] == "Europe/Berlin" and d4["channels"] == []

    # The single route sees the same devices: same token, same id.
    again = await register(gateway, provider="fcm", platform="android", token=tokens[0])
    assert again["id"] == ids[0] and again["channels"] == ["orders"]

    # Again in a batch: updated in place, same ids; fields left out keep their values, given ones
    # replace them; an invalid device becomes active again; a new token is created beside them.
    meta = {"ids": [ids[4]], "meta_update": {"meta": {"k": "v"}}}
    assert (await gateway.client.post("/v1/devices/update", json=meta)).status_code == 200
    r = await gateway.client.post("/v1/users/dave/channels", json={"op": "add", "channels": ["dvip"]})
    assert r.status_code == 200, r.text
    new_token = fcm_token()
    second = await batch(
        gateway,
        [
            {"provider": "fcm", "platform": "android", "token": tokens[0], "tags": {"t": "2"}},
            {"provider": "fcm", "platform": "ios", "token": tokens[1], "user": "dave", "channels": ["x"]},
            {"provider": "webpush", "platform": "web", "token": sub, "meta": {}},
            {"provider": "fcm", "platform": "android", "token": new_token},
            {"provider": "fcm", "platform": "android", "token": tokens[2], "locale": "fr"},
        ],
    )
    assert second["created"] == 1 and second["updated"] == 4
    assert [d["id"] for d in second["devices"]][:3] == ids[:3] and second["devices"][4]["id"] == ids[4]
    assert [d["created"] for d in second["devices"]] == [False, False, False, True, False]
    d0, d1, d2, _, d4 = [await device(gateway, d["id"]) for d in second["devices"]]
    assert d0["tags"] == {"t": "2"} and d0["channels"] == ["orders"]
    # carol's binding left with carol, dave's arrived; the given channels replace the old.
    assert d1["user"] == "dave" and d1["channels"] == ["dvip", "x"] and d1["meta"] == {"v": "2"}
    assert d2["meta"] == {} and d2["channels"] == ["orders", "web"]
    assert d4["locale"] == "fr" and d4["timezone"] == "Europe/Berlin" and d4["meta"] == {"k": "v"}

    # Channels without a user: the device keeps its user and that user's bound channels.
    await batch(gateway, [{"provider": "fcm", "platform": "ios", "token": tokens[1], "channels": ["y"]}])
    d1 = await device(gateway, ids[1])
    assert d1["user"] == "dave" and d1["channels"] == ["dvip", "y"]

    # Token rotation by id works inside a batch too.
    rotated = fcm_token()
    third = await batch(gateway, [{"id": ids[4], "provider": "fcm", "platform": "android", "token": rotated}])
    assert third["devices"] == [{"id": ids[4], "created": False}]
    assert (await device(gateway, ids[4]))["token"] == rotated

    # And the registered devices are reachable by a publish.
    pub = await publish(gateway.client, recipients=[{"type": "channel", "channel": "orders"}])
    done = await gateway.wait_done(pub)
    assert done["counts"]["sent"] == 2


async def test_batch_is_all_or_nothing_and_names_every_bad_index(gateway: Gateway, lab: Lab) -> None:
    good = {"provider": "fcm", "platform": "android"}
    items: list[dict[str, Any]] = [
        {**good, "token": fcm_token()},
        {**good, "token": fcm_token(), "platform": "windows"},  # platform does not suit fcm
        {**good, "token": fcm_token()},
        {**good, "token": fcm_token(), "timezone": "Mars/Olympus"},
        {**good, "token": "has space"},
        {**good, "token": fcm_token(), "channels": ["bad channel"]},
        {**good, "token": fcm_token(), "environment": "sandbox"},  # only APNs has one
        {"provider": "webpush", "platform": "web", "token": {"endpoint": "https://x.example/1"}},
    ]
    body = await batch(gateway, items, 400)
    err = body["error"]
    assert err["code"] == "invalid_request"
    assert [p["index"] for p in err["details"]] == [1, 3, 4, 5, 6, 7]
    assert [p["key"] for p in err["details"]] == [
        "devices[1].platform", "devices[3].timezone", "devices[4].token", "devices[5].channels",
        "devices[6].environment", "devices[7].token",
    ]  # fmt: skip
    assert err["message"].startswith("devices[1].platform: ") and "and 5 more" in err["message"]
    assert await count_devices(gateway) == 0

    # Shape errors (wrong types, unknown fields, a missing field) are found by the schema; the
    # first is reported with the item's index in its path.
    for bad, where in (
        ({**good, "token": 5}, "devices[1].token"),
        ({**good, "token": "t", "colour": "red"}, "devices[1]"),
        ({"provider": "fcm", "token": "t"}, "devices[1]"),
    ):
        pair = [{**good, "token": fcm_token()}, bad]
        r = await gateway.client.post("/v1/devices/batch", json={"devices": pair})
        assert r.status_code == 400, r.text
        assert where in r.text, r.text
    # Empty and oversized batches, a duplicated token.
    for devices in ([], [{**good, "token": fcm_token()} for _ in range(1001)]):
        r = await gateway.client.post("/v1/devices/batch", json={"devices": devices})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
    token = fcm_token()
    three = [{**good, "token": token}, {**good, "token": fcm_token()}, {**good, "token": token}]
    dup = await batch(gateway, three, 400)
    assert dup["error"]["details"][0]["index"] == 2 and "devices[0]" in dup["error"]["message"]
    assert await count_devices(gateway) == 0

    # An unknown id is a 404, a token of another device a 409: both name the index, write nothing.
    existing = await register(gateway, **good, token=fcm_token())
    other = await register(gateway, **good, token=fcm_token())
    fresh = fcm_token()
    r = await gateway.client.post(
        "/v1/devices/batch",
        json={"devices": [{**good, "token": fresh}, {**good, "id": "dev_nope", "token": fcm_token()}]},
    )
    assert r.status_code == 404 and r.json()["error"]["details"][0]["index"] == 1, r.text
    r = await gateway.client.post(
        "/v1/devices/batch",
        json={"devices": [{**good, "token": fresh}, {**good, "id": other["id"], "token": existing["token"]}]},
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
    assert r.json()["error"]["details"][0]["key"] == "devices[1].token"
    assert await count_devices(gateway) == 2  # `fresh` was not written either time


async def test_batch_of_a_thousand(gateway: Gateway, lab: Lab) -> None:
    items = [
        {"provider": "fcm", "platform": "android", "token": fcm_token(), "channels": ["big", f"c{i % 7}"]}
        for i in range(1000)
    ]
    body = await batch(gateway, items)
    assert body["created"] == 1000 and len({d["id"] for d in body["devices"]}) == 1000
    r = await gateway.client.get("/v1/channels", params={"limit": 1000})
    counts = {c["channel"]: c["devices"] for c in r.json()["items"]}
    assert counts["big"] == 1000 and sum(v for k, v in counts.items() if k != "big") == 1000
    again = await batch(gateway, items)
    assert again["updated"] == 1000
    assert [d["id"] for d in again["devices"]] == [d["id"] for d in body["devices"]]
