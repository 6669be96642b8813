"""One registry behind every front-end (issue 14, acceptance 4): a device registered through one
compat front-end is the same device, with the same channels, for the native API and for the
other front-ends, and a send through yet another reaches it as that device."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.api import fcm_token
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.sockudo import call, new_key


@pytest.fixture
async def gw(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    lab.reset()
    # The master key: Sockudo's signing secrets are stored sealed with it.
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as g:
        yield g


async def _centrifugo(gw: Gateway, method: str, params: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gw.url, headers={"X-API-Key": gw.key}) as c:
        r = await c.post(f"/api/{method}", json=params)
    assert r.status_code == 200 and "error" not in r.json(), r.text
    result: dict[str, Any] = r.json()["result"]
    return result


async def test_a_device_registered_through_sentori_is_everyones(gw: Gateway, lab: Lab) -> None:
    token = fcm_token()
    r = await gw.client.post(
        "/v1/push/tokens",
        json={
            "kind": "fcm",
            "nativeToken": token,
            "installId": "i-" + secrets.token_hex(4),
            "userKey": "ann",
        },
    )
    assert r.status_code == 202, r.text
    handle = r.json()["spToken"]
    r = await gw.client.post(f"/v1/push/devices/{handle}/topics", json={"topic": "scores"})
    assert r.status_code == 202, r.text

    # The native API: the same device, user and channel.
    r = await gw.client.get("/v1/devices", params={"user": "ann"})
    (listed,) = r.json()["items"]
    dev = listed["id"]
    native = (await gw.client.get(f"/v1/devices/{dev}")).json()["device"]
    assert (native["token"], native["channels"]) == (token, ["scores"])

    # Centrifugo: listed with its topic; a topic added there is a native channel.
    page = await _centrifugo(gw, "device_list", {"filter": {"ids": [dev]}, "include_topics": True})
    assert [(d["id"], d["topics"]) for d in page["items"]] == [(dev, ["scores"])]
    await _centrifugo(gw, "device_topic_update", {"device_id": dev, "op": "add", "topics": ["news"]})
    assert sorted((await gw.client.get(f"/v1/devices/{dev}")).json()["device"]["channels"]) == [
        "news",
        "scores",
    ]

    # Sockudo: the same device, its user as clientId, both channels.
    key = await new_key(gw.client)
    got = await call(gw.client, key, "GET", f"/deviceRegistrations/{dev}")
    assert got.status_code == 200 and got.json()["clientId"] == "ann", got.text
    subs = await call(gw.client, key, "GET", "/channelSubscriptions", params={"deviceId": dev})
    assert sorted(s["channel"] for s in subs.json()["items"]) == ["news", "scores"]

    # gorush sends to the raw token: it reaches the registered device, recorded as that device.
    async with httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {gw.key}"}) as c:
        r = await c.post(
            "/api/push", json={"notifications": [{"tokens": [token], "platform": 2, "message": "hi"}]}
        )
    assert r.status_code == 200, r.text
    (publish_id,) = [i for i in r.headers["X-Pushgate-Publish-Ids"].split(",") if i]
    assert (await gw.wait_done(publish_id))["counts"]["sent"] == 1
    (delivery,) = await gw.deliveries(publish_id)
    assert delivery["device_id"] == dev
    assert [m["message"]["notification"]["body"] for m in lab.ledger("fcm", token=token)["items"]] == ["hi"]

    # Removed through Centrifugo: gone for the native API and for Sockudo.
    await _centrifugo(gw, "device_remove", {"ids": [dev]})
    assert (await gw.client.get(f"/v1/devices/{dev}")).status_code == 404
    assert (await call(gw.client, key, "GET", f"/deviceRegistrations/{dev}")).status_code == 404
