"""Sentori's Expo-compatible routes driven by Expo's own Python server SDK (``exponent_server_sdk``,
unmodified: only its ``host``/``api_url`` point at pushgate and its session carries the app key,
as Expo's access-token setup does), plus the routes' raw wire shapes and bad input."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
import requests
from exponent_server_sdk import DeviceNotRegisteredError, PushClient, PushMessage, PushServerError
from support.api import fcm_token
from support.gateway import Gateway
from support.lab import Lab

API_URL = "/v1/push/expo-compat"


def expo_token() -> str:
    return f"ExponentPushToken[{secrets.token_urlsafe(16)}]"


async def register_expo(gw: Gateway) -> tuple[str, str]:
    """A device registered through Sentori with its Expo push token: (Expo token, FCM token)."""
    token, expo = fcm_token(), expo_token()
    r = await gw.client.post(
        "/v1/push/devices", json={"kind": "fcm", "nativeToken": token, "expoPushToken": expo}
    )
    assert r.status_code == 202, r.text
    return expo, token


def sdk(gw: Gateway) -> PushClient:
    session = requests.Session()
    session.headers.update(
        {
            "accept": "application/json",
            "accept-encoding": "gzip, deflate",
            "content-type": "application/json",
            "Authorization": f"Bearer {gw.key}",
        }
    )
    return PushClient(host=gw.url, api_url=API_URL, session=session)


async def test_expo_sdk_send_and_receipts(gateway: Gateway, lab: Lab) -> None:
    expo, token = await register_expo(gateway)
    client = sdk(gateway)
    message = PushMessage(to=expo, title="Hi", body="from Expo", data={"n": 1}, sound="default", badge=2)
    ticket = await asyncio.to_thread(client.publish, message)
    ticket.validate_response()
    assert ticket.is_success() and ticket.id.startswith("pub_")
    await gateway.wait_done(ticket.id.split(".")[0])
    [sent] = [i["message"] for i in lab.ledger("fcm")["items"] if i["message"].get("token") == token]
    assert sent["notification"] == {"title": "Hi", "body": "from Expo"} and sent["data"]["n"] == "1"

    receipts = await asyncio.to_thread(client.check_receipts_multiple, [ticket])
    assert [(r.id, r.status) for r in receipts] == [(ticket.id, "ok")]
    receipts[0].validate_response()

    unknown = expo_token()
    bad = await asyncio.to_thread(client.publish, PushMessage(to=unknown, title="x"))
    assert bad.status == "error" and bad.details == {"error": "DeviceNotRegistered", "expoPushToken": unknown}
    with pytest.raises(DeviceNotRegisteredError):
        bad.validate_response()

    three = [
        PushMessage(to=expo, title="a"),
        PushMessage(to=unknown, title="b"),
        PushMessage(to=expo, title="c"),
    ]
    both = await asyncio.to_thread(client.publish_multiple, three)
    assert [t.status for t in both] == ["ok", "error", "ok"]
    assert len({t.id.split(".")[0] for t in both if t.status == "ok"}) == 2  # one publish per message

    with pytest.raises(PushServerError) as failed:
        await asyncio.to_thread(client.publish, PushMessage(to=expo, title="x", priority="urgent"))
    assert failed.value.errors[0]["code"] == "VALIDATION_ERROR"


async def test_expo_compat_wire_and_bad_input(gateway: Gateway, lab: Lab) -> None:
    expo, _ = await register_expo(gateway)
    c = gateway.client
    gone_expo, gone = await register_expo(gateway)
    lab.fault(provider="fcm", tokens=[gone], error="unregistered")
    [dead] = (await c.post(f"{API_URL}/send", json={"to": gone_expo, "title": "gone"})).json()["data"]
    await gateway.wait_done(dead["id"].split(".")[0])
    r = await c.post(f"{API_URL}/push/getReceipts", json={"ids": [dead["id"]]})
    assert r.json()["data"][dead["id"]]["details"] == {"error": "DeviceNotRegistered"}
    [again] = (await c.post(f"{API_URL}/send", json={"to": gone_expo, "title": "gone"})).json()["data"]
    assert again["details"]["error"] == "DeviceNotRegistered"  # the device is switched off now
    r = await c.post(f"{API_URL}/send", json={"to": expo, "title": "single object"})
    assert r.status_code == 200
    [ticket] = r.json()["data"]
    assert ticket["status"] == "ok"
    await gateway.wait_done(ticket["id"].split(".")[0])
    r = await c.post(
        f"{API_URL}/send", json=[{"to": [expo, "ExponentPushToken[gone]", expo], "body": "list"}]
    )
    listed = r.json()["data"]
    assert [t["status"] for t in listed] == ["ok", "error", "ok"] and listed[0]["id"] == listed[2]["id"]
    assert listed[1]["details"]["error"] == "DeviceNotRegistered"
    r = await c.get(f"{API_URL}/receipts/{ticket['id']}")
    assert r.status_code == 200 and r.json() == {"data": {ticket["id"]: {"status": "ok"}}}
    r = await c.post(f"{API_URL}/receipts", json={"ids": [ticket["id"], "pub_x.dev_y", "junk"]})
    assert r.json() == {"data": {ticket["id"]: {"status": "ok"}}}  # unknown ids are left out

    cases: list[tuple[str, Any, str]] = [
        ("/send", [{"to": expo}] * 101, "PUSH_TOO_MANY_NOTIFICATIONS"),
        ("/send", [{"to": [expo] * 600}, {"to": [expo] * 401}], "PUSH_TOO_MANY_NOTIFICATIONS"),
        ("/send", {"title": "no to"}, "VALIDATION_ERROR"),
        ("/send", {"to": []}, "VALIDATION_ERROR"),
        ("/send", {"to": expo, "badge": "one"}, "VALIDATION_ERROR"),
        ("/send", {"to": expo, "ttl": -1}, "VALIDATION_ERROR"),
        ("/send", "text", "VALIDATION_ERROR"),
        ("/push/getReceipts", {"ids": ["x"] * 1001}, "PUSH_TOO_MANY_RECEIPTS"),
        ("/push/getReceipts", {"ids": "x"}, "VALIDATION_ERROR"),
    ]
    for path, body, code in cases:
        r = await c.post(API_URL + path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["errors"][0]["code"] == code, (path, r.text)
    r = await c.post(f"{API_URL}/send", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "VALIDATION_ERROR"
    r = await c.get(f"{API_URL}/receipts/pub_x.dev_y")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NOT_FOUND"
    r = await c.post(
        "/v1/push/devices", json={"kind": "fcm", "nativeToken": fcm_token(), "expoPushToken": "abc"}
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_body"
