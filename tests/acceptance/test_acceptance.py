"""The spine's acceptance scenarios, on SQLite and PostgreSQL, against the real lab."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

from support.api import endpoint, fcm_token, publish, register, wait_final
from support.bulk import register_many, subscriptions
from support.gateway import Gateway
from support.lab import Lab


async def test_fanout_1000_devices_to_a_channel(gateway: Gateway, lab: Lab) -> None:
    # Set up through the batch route and one lab connection: a request (and a lab connection)
    # a device took most of this test's run, and the fan-out is what it is about.
    subs = await asyncio.to_thread(subscriptions, lab, 500)
    items: list[dict[str, Any]] = [
        {"provider": "fcm", "token": fcm_token(), "platform": "android", "channels": ["orders"]}
        for _ in range(500)
    ]
    items += [{"provider": "webpush", "token": s, "platform": "web", "channels": ["orders"]} for s in subs]
    devices = await register_many(gateway, items)
    assert len({d["id"] for d in devices}) == 1000

    pub_id = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "orders"}],
        notification={"title": "Order shipped", "body": "Your order #42 is on its way"},
    )
    status = await gateway.wait_done(pub_id)
    assert status["status"] == "completed"
    assert status["counts"]["planned"] == 1000
    assert status["counts"]["sent"] == 1000
    assert status["by_provider"]["fcm"]["sent"] == 500
    assert status["by_provider"]["webpush"]["sent"] == 500

    fcm = lab.ledger("fcm")
    web = lab.ledger("webpush")
    assert fcm["total"] == 500 and web["total"] == 500
    fcm_tokens = Counter(item["token"] for item in fcm["items"])
    assert set(fcm_tokens) == {d["token"] for d in devices if d["provider"] == "fcm"}
    assert max(fcm_tokens.values()) == 1
    web_tokens = Counter(item["token"] for item in web["items"])
    assert set(web_tokens) == {s["endpoint"] for s in subs}
    assert max(web_tokens.values()) == 1
    for item in web["items"]:
        assert item["payload"]["title"] == "Order shipped"
        assert item["payload"]["body"] == "Your order #42 is on its way"
    for item in fcm["items"]:
        assert item["message"]["notification"] == {
            "title": "Order shipped",
            "body": "Your order #42 is on its way",
        }

    deliveries = await gateway.deliveries(pub_id)
    assert len(deliveries) == 1000
    assert {d["status"] for d in deliveries} == {"sent"}
    assert all(d["attempts"] == 1 and d["sent_at"] and d["provider_message_id"] for d in deliveries)


async def test_mixed_recipients_notify_each_device_once(gateway: Gateway, lab: Lab) -> None:
    a = await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["c1"])
    b = await register(
        gateway, provider="fcm", token=fcm_token(), platform="android", channels=["c1"], user="u1"
    )
    c = await register(gateway, provider="webpush", token=lab.subscription(), platform="web", user="u1")
    d = await register(gateway, provider="fcm", token=fcm_token(), platform="ios")
    raw = fcm_token()  # not registered anywhere
    pub_id = await publish(
        gateway.client,
        recipients=[
            {"type": "channel", "channel": "c1"},
            {"type": "user", "user": "u1"},
            {"type": "device", "device_id": a["id"]},
            {"type": "device", "device_id": d["id"]},
            {"type": "token", "provider": "fcm", "token": b["token"]},
            {"type": "token", "provider": "fcm", "token": raw},
        ],
    )
    status = await gateway.wait_done(pub_id)
    assert status["counts"]["planned"] == 5
    assert status["counts"]["sent"] == 5
    got = Counter(i["token"] for i in lab.ledger("fcm")["items"])
    assert got == Counter({a["token"]: 1, b["token"]: 1, d["token"]: 1, raw: 1})
    assert lab.ledger("webpush", endpoint(c))["total"] == 1
    deliveries = await gateway.deliveries(pub_id)
    by_device = {x["device_id"] for x in deliveries}
    assert by_device == {a["id"], b["id"], c["id"], d["id"], None}


async def test_unregistered_tokens_invalidate_devices(gateway: Gateway, lab: Lab) -> None:
    devices = [
        await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["news"])
        for _ in range(30)
    ]
    dead = devices[:20]
    lab.fault(provider="fcm", tokens=[d["token"] for d in dead], error="unregistered")
    pub_id = await publish(gateway.client, recipients=[{"type": "channel", "channel": "news"}])
    status = await gateway.wait_done(pub_id)
    assert status["counts"]["invalid_token"] == 20
    assert status["counts"]["sent"] == 10
    invalid = await gateway.deliveries(pub_id, status="invalid_token")
    assert {x["device_id"] for x in invalid} == {d["id"] for d in dead}
    assert all(x["error_code"] == "UNREGISTERED" for x in invalid)
    for d in dead[:3]:
        body = (await gateway.client.get(f"/v1/devices/{d['id']}")).json()["device"]
        assert body["status"] == "invalid"
        assert "UNREGISTERED" in body["invalid_reason"]
        assert body["invalidated_at"]
    listed = (await gateway.client.get("/v1/devices", params={"status": "invalid", "limit": 100})).json()
    assert len(listed["items"]) == 20

    # A second publish skips them.
    lab.reset()
    pub2 = await publish(gateway.client, recipients=[{"type": "channel", "channel": "news"}])
    status2 = await gateway.wait_done(pub2)
    assert status2["counts"]["planned"] == 10
    assert lab.ledger("fcm")["total"] == 10

    # Registering one again reactivates it, and it is reached again.
    again = await register(gateway, provider="fcm", token=dead[0]["token"], platform="android")
    assert again["id"] == dead[0]["id"]
    assert again["status"] == "active"
    assert "invalid_reason" not in again
    pub3 = await publish(gateway.client, recipients=[{"type": "channel", "channel": "news"}])
    status3 = await gateway.wait_done(pub3)
    assert status3["counts"]["planned"] == 11
    assert lab.ledger("fcm", dead[0]["token"])["total"] == 1


async def test_retry_after_is_honoured(gateway: Gateway, lab: Lab) -> None:
    sub = lab.subscription()
    dev = await register(gateway, provider="webpush", token=sub, platform="web")
    lab.fault(provider="webpush", tokens=[sub["endpoint"]], error="429", retry_after=1, times=1)
    pub_id = await publish(gateway.client, recipients=[{"type": "device", "device_id": dev["id"]}])
    status = await gateway.wait_done(pub_id)
    assert status["status"] == "completed"
    assert status["counts"]["sent"] == 1 and status["counts"]["retrying"] == 0
    [delivery] = await gateway.deliveries(pub_id)
    assert delivery["status"] == "sent"
    assert delivery["attempts"] == 2
    [item] = lab.ledger("webpush", sub["endpoint"])["items"]
    created = datetime.fromisoformat(status["created_at"].replace("Z", "+00:00"))
    received = datetime.fromisoformat(item["received_at"].replace("Z", "+00:00"))
    assert (received - created).total_seconds() >= 1.0


async def test_retryable_errors_end_failed_after_last_attempt(database_url: str, lab: Lab) -> None:
    from support.gateway import gateway_settings, running_gateway

    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_RETRY_MAX_ATTEMPTS="3", PUSHGATE_RETRY_LADDER="[0.05, 0.1, 0.2]"
    )
    async with running_gateway(settings) as gw:
        dev = await register(gw, provider="fcm", token=fcm_token(), platform="android")
        lab.fault(provider="fcm", tokens=[dev["token"]], error="503")
        pub_id = await publish(gw.client, recipients=[{"type": "device", "device_id": dev["id"]}])
        status = await gw.wait_done(pub_id)
        assert status["counts"]["failed"] == 1 and status["counts"]["retrying"] == 0
        [delivery] = await gw.deliveries(pub_id)
        assert delivery["status"] == "failed"
        assert delivery["attempts"] == 3
        assert delivery["error_code"] == "UNAVAILABLE"
        # The device is untouched by a provider-side failure.
        body = (await gw.client.get(f"/v1/devices/{dev['id']}")).json()["device"]
        assert body["status"] == "active"


async def test_idempotency_key(gateway: Gateway, lab: Lab) -> None:
    devs = [
        await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["promo"])
        for _ in range(3)
    ]
    body = {
        "recipients": [{"type": "channel", "channel": "promo"}],
        "notification": {"title": "Sale"},
        "idempotency_key": "campaign-2026-11",
    }
    first = await gateway.client.post("/v1/publish", json=body)
    second = await gateway.client.post("/v1/publish", json=body)
    assert first.status_code == second.status_code == 202
    assert first.json()["publish_id"] == second.json()["publish_id"]
    await gateway.wait_done(first.json()["publish_id"])
    third = await gateway.client.post("/v1/publish", json=body)
    assert third.json() == {"publish_id": first.json()["publish_id"], "status": "completed"}
    await asyncio.sleep(0.3)
    got = Counter(i["token"] for i in lab.ledger("fcm")["items"])
    assert got == Counter({d["token"]: 1 for d in devs})
    listed = (await gateway.client.get("/v1/publishes")).json()["items"]
    assert len(listed) == 1


async def test_user_channel_bindings(gateway: Gateway, lab: Lab) -> None:
    r = await gateway.client.post("/v1/users/u1/channels", json={"op": "add", "channels": ["news"]})
    assert r.status_code == 200
    await gateway.client.post("/v1/users/u2/channels", json={"op": "set", "channels": ["sports", "weather"]})
    dev = await register(
        gateway, provider="fcm", token=fcm_token(), platform="android", user="u1", channels=["own"]
    )
    assert sorted(dev["channels"]) == ["news", "own"]
    members = (await gateway.client.get("/v1/channels/news/devices")).json()["items"]
    assert [m["id"] for m in members] == [dev["id"]]

    # Another login on the device: u1's bindings leave, u2's arrive, its own channel stays.
    r = await gateway.client.post(
        "/v1/devices/update", json={"ids": [dev["id"]], "user_update": {"user": "u2"}}
    )
    assert r.json() == {"matched": 1}
    after = (await gateway.client.get(f"/v1/devices/{dev['id']}")).json()["device"]
    assert after["user"] == "u2"
    assert sorted(after["channels"]) == ["own", "sports", "weather"]

    # A binding added later reaches existing devices at once.
    await gateway.client.post("/v1/users/u2/channels", json={"op": "add", "channels": ["alerts"]})
    after = (await gateway.client.get(f"/v1/devices/{dev['id']}")).json()["device"]
    assert "alerts" in after["channels"]
    listing = (await gateway.client.get("/v1/user-channels", params={"users": "u2"})).json()
    assert [i["channel"] for i in listing["items"]] == ["alerts", "sports", "weather"]
    prefixed = (await gateway.client.get("/v1/user-channels", params={"channel_prefix": "s"})).json()
    assert [(i["user"], i["channel"]) for i in prefixed["items"]] == [("u2", "sports")]

    # Logout: the device keeps only its own channel.
    await gateway.client.patch(f"/v1/devices/{dev['id']}", json={"user": ""})
    after = (await gateway.client.get(f"/v1/devices/{dev['id']}")).json()["device"]
    assert "user" not in after
    assert after["channels"] == ["own"]

    # Publishing to the bound channel reaches the user's device.
    dev2 = await register(gateway, provider="fcm", token=fcm_token(), platform="android", user="u1")
    pub_id = await publish(gateway.client, recipients=[{"type": "channel", "channel": "news"}])
    status = await gateway.wait_done(pub_id)
    assert status["counts"]["sent"] == 1
    assert lab.ledger("fcm", dev2["token"])["total"] == 1


async def test_app_isolation(gateway: Gateway, lab: Lab) -> None:
    services = gateway.app.state.services
    _, key_b = await services.apps.create("tenant-b")
    dev_a = await register(
        gateway, provider="fcm", token=fcm_token(), platform="android", channels=["shared"]
    )
    pub_a = await publish(gateway.client, recipients=[{"type": "channel", "channel": "shared"}])
    await gateway.wait_done(pub_a)
    lab.reset()
    async with gateway.as_app(key_b) as b:
        assert (await b.get(f"/v1/devices/{dev_a['id']}")).status_code == 404
        assert (await b.get(f"/v1/publishes/{pub_a}")).status_code == 404
        assert (await b.get(f"/v1/publishes/{pub_a}/deliveries")).status_code == 404
        assert (await b.patch(f"/v1/devices/{dev_a['id']}", json={"user": "x"})).status_code == 404
        assert (await b.delete(f"/v1/devices/{dev_a['id']}")).status_code == 404
        assert (await b.put(f"/v1/devices/{dev_a['id']}/channels/x")).status_code == 404
        assert (await b.get("/v1/devices")).json()["items"] == []
        assert (await b.get("/v1/channels")).json()["items"] == []
        assert (await b.get("/v1/publishes")).json()["items"] == []
        r = await b.post("/v1/devices/remove", json={"ids": [dev_a["id"]]})
        assert r.json() == {"matched": 0}
        pub_b = await publish(
            b,
            recipients=[
                {"type": "channel", "channel": "shared"},
                {"type": "device", "device_id": dev_a["id"]},
            ],
        )
        r = await b.get(f"/v1/publishes/{pub_b}")
        assert r.status_code == 200
        body = await wait_final(b, pub_b, 5)
        assert body["status"] == "completed" and body["counts"]["planned"] == 0
    assert lab.ledger("fcm")["total"] == 0
    still = (await gateway.client.get(f"/v1/devices/{dev_a['id']}")).json()["device"]
    assert "user" not in still  # B's PATCH did not apply
    assert still["channels"] == ["shared"]  # B's PUT did not apply
