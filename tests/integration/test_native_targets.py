"""Provider-side audiences (FCM topics and conditions) and the APNs device environment field."""

from __future__ import annotations

from support.api import publish
from support.gateway import Gateway
from support.lab import Lab


async def test_fcm_topic_and_condition_recipients(gateway: Gateway, lab: Lab) -> None:
    cond = "'news' in topics && ('sports' in topics || 'weather' in topics)"
    pub_id = await publish(
        gateway.client,
        recipients=[
            {"type": "fcm_topic", "topic": "news"},
            {"type": "fcm_condition", "condition": cond},
            {"type": "fcm_topic", "topic": "news"},  # the same audience twice is one request
        ],
        notification={"title": "Extra!"},
    )
    status = await gateway.wait_done(pub_id)
    assert status["counts"]["planned"] == 2 and status["counts"]["sent"] == 2
    items = lab.ledger("fcm")["items"]
    got = {(i["message"].get("topic"), i["message"].get("condition")) for i in items}
    assert len(items) == 2 and got == {("news", None), (None, cond)}
    assert all("token" not in i["message"] for i in items)
    assert all(i["message"]["notification"] == {"title": "Extra!"} for i in items)
    deliveries = await gateway.deliveries(pub_id)
    assert {d["device_id"] for d in deliveries} == {None}


async def test_bad_native_targets_are_400(gateway: Gateway) -> None:
    for recipient in (
        {"type": "fcm_topic", "topic": "bad topic!"},
        {"type": "fcm_topic", "topic": ""},
        {"type": "fcm_condition", "condition": ""},
        {"type": "fcm_topic"},
    ):
        r = await gateway.client.post(
            "/v1/publish", json={"recipients": [recipient], "notification": {"title": "x"}}
        )
        assert r.status_code == 400, (recipient, r.text)
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []


async def test_device_environment_is_apns_only(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/v1/devices",
        json={"provider": "fcm", "token": "f" * 30, "platform": "android", "environment": "sandbox"},
    )
    assert r.status_code == 400 and "environment" in r.json()["error"]["message"]
    r = await gateway.client.post(
        "/v1/devices",
        json={"provider": "apns", "token": "ab" * 32, "platform": "ios", "environment": "staging"},
    )
    assert r.status_code == 400
    r = await gateway.client.post(
        "/v1/devices",
        json={"provider": "apns", "token": "ab" * 32, "platform": "ios", "environment": "sandbox"},
    )
    assert r.status_code == 200, r.text
    dev = r.json()["device"]
    assert dev["environment"] == "sandbox"
    r = await gateway.client.patch(f"/v1/devices/{dev['id']}", json={"environment": "production"})
    assert r.json()["device"]["environment"] == "production"
