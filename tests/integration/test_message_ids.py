"""Message ids in payloads (docs/receipts.md) on both databases, as the provider lab receives
them: ``pushgate: {"p", "d"}`` per device for FCM, APNs, Web Push and raw WNS; none in WNS XML;
content that looks like ids cannot move them; ``[apps.<name>] message_ids = false`` leaves them
out (and the preview says so); ``notification.data`` cannot use the key."""

from __future__ import annotations

import json
import secrets
from typing import Any

from support.api import endpoint, fcm_token, publish, register
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab

from pushgate.config import AppSection

TRICKY = {
    "pushgate_like": '{"p":"pub_x","d":"dev_y"}',
    "quotes": '\\"d\\":\\"',
    "unicode": "é ü 🙂",
}


async def test_each_device_gets_its_own_ids_in_every_json_payload(gateway: Gateway, lab: Lab) -> None:
    with lab.client() as c:
        channel_uri = str(c.post("/wns/channels").raise_for_status().json()["channel_uri"])
    devices = [
        await register(gateway, provider="fcm", token=fcm_token(), platform="android"),
        await register(gateway, provider="fcm", token=fcm_token(), platform="android"),
        await register(gateway, provider="apns", token=secrets.token_hex(32), platform="ios"),
        await register(gateway, provider="webpush", token=lab.subscription(), platform="web"),
        await register(gateway, provider="wns", token=channel_uri, platform="windows"),
    ]
    # Data only: WNS sends it raw (JSON), so it carries the ids too.
    pid = await publish(
        gateway.client,
        recipients=[{"type": "device", "device_id": d["id"]} for d in devices],
        notification={"data": TRICKY},
    )
    assert (await gateway.wait_done(pid))["counts"]["sent"] == len(devices)
    fcm_a, fcm_b, apns, web, wns = devices
    for d in (fcm_a, fcm_b):
        (item,) = lab.ledger("fcm", d["token"])["items"]
        data = dict(item["message"]["data"])
        assert json.loads(data.pop("pushgate")) == {"p": pid, "d": d["id"]}
        assert data == TRICKY
    (item,) = lab.ledger("apns", apns["token"])["items"]
    assert item["payload"]["pushgate"] == {"p": pid, "d": apns["id"]}
    assert {k: item["payload"][k] for k in TRICKY} == TRICKY
    (item,) = lab.ledger("webpush", endpoint(web))["items"]
    assert item["payload"]["pushgate"] == {"p": pid, "d": web["id"]}
    assert item["payload"]["data"] == TRICKY
    (item,) = lab.ledger("wns", wns["token"])["items"]
    body = json.loads(item["body"])
    assert body.pop("pushgate") == {"p": pid, "d": wns["id"]}


async def test_wns_toasts_carry_no_ids_and_raw_tokens_carry_tok_ids(gateway: Gateway, lab: Lab) -> None:
    with lab.client() as c:
        channel_uri = str(c.post("/wns/channels").raise_for_status().json()["channel_uri"])
    wns = await register(gateway, provider="wns", token=channel_uri, platform="windows")
    raw = fcm_token()
    pid = await publish(
        gateway.client,
        recipients=[
            {"type": "device", "device_id": wns["id"]},
            {"type": "token", "provider": "fcm", "token": raw},
        ],
        notification={"title": "T", "body": "B"},
    )
    assert (await gateway.wait_done(pid))["counts"]["sent"] == 2
    (item,) = lab.ledger("wns", wns["token"])["items"]
    assert item["body"].startswith("<toast") and "pushgate" not in item["body"]
    (item,) = lab.ledger("fcm", raw)["items"]
    (record,) = [d for d in await gateway.deliveries(pid) if d["provider"] == "fcm"]
    assert record["recipient_id"].startswith("tok_")
    assert json.loads(item["message"]["data"]["pushgate"]) == {"p": pid, "d": record["recipient_id"]}


async def test_data_cannot_use_the_reserved_key(gateway: Gateway) -> None:
    body = {
        "recipients": [{"type": "channel", "channel": "c"}],
        "notification": {"title": "T", "data": {"pushgate": "mine"}},
    }
    r = await gateway.client.post("/v1/publish", json=body)
    assert r.status_code == 400, r.text
    assert "'pushgate' is reserved for message ids" in r.json()["error"]["message"]


def _data(item: dict[str, Any]) -> dict[str, Any]:
    return dict(item["message"].get("data") or {})


async def test_an_app_that_opts_out_sends_no_ids(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab)
    settings.apps["default"] = AppSection(message_ids=False)
    async with running_gateway(settings) as gw:
        device = await register(gw, provider="fcm", token=fcm_token(), platform="android")
        apns = await register(gw, provider="apns", token=secrets.token_hex(32), platform="ios")
        pid = await publish(
            gw.client,
            recipients=[{"type": "device", "device_id": d["id"]} for d in (device, apns)],
            notification={"title": "T", "data": {"k": "v"}},
        )
        assert (await gw.wait_done(pid))["counts"]["sent"] == 2
        (item,) = lab.ledger("fcm", device["token"])["items"]
        assert _data(item) == {"k": "v"}
        (item,) = lab.ledger("apns", apns["token"])["items"]
        assert "pushgate" not in item["payload"] and item["payload"]["k"] == "v"
        preview = await gw.client.post(
            "/v1/publish/preview",
            json={"recipients": [{"type": "channel", "channel": "c"}], "notification": {"data": {"k": "v"}}},
        )
        assert preview.json()["providers"]["fcm"]["request"]["body"]["message"]["data"] == {"k": "v"}
