"""Sockudo (issue 14, acceptance 1 and 2): the seed document's examples replayed as written,
signed; and Sockudo's official Python server SDK (``sockudo-http-python``), unmodified,
pointed at pushgate."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sockudo_http_python import AsyncSockudo, PushCursorParams, PushSubscriptionParams, SockudoOptions
from support.api import fcm_token
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.sockudo import call, new_key
from support.wait import wait_for


@pytest.fixture
async def sgw(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    lab.reset()
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as gw:
        yield gw


def arrived(lab: Lab, token: str, at_least: int = 1) -> Any:
    async def check() -> int | None:
        n = int(lab.ledger("fcm", token)["total"])
        return n if n >= at_least else None

    return check


async def test_seed_examples_replayed(sgw: Gateway, lab: Lab) -> None:
    """Each example of the seed document (its snake_case bodies, as the docs' SDK sends them)."""
    key = await new_key(sgw.client)
    c = sgw.client
    token = fcm_token()
    # sockudo.activateDevice({device_id, client_id, platform, provider_token})
    r = await call(
        c,
        key,
        "POST",
        "/deviceRegistrations",
        {"device_id": "ios-device-1", "client_id": "user-42", "platform": "android", "provider_token": token},
    )
    assert r.status_code == 201, r.text
    assert r.json()["device"]["id"] == "ios-device-1" and r.json()["deviceIdentityToken"]
    # sockudo.upsertChannelPushSubscription({device_id, client_id, channel})
    r = await call(
        c,
        key,
        "POST",
        "/channelSubscriptions",
        {"device_id": "ios-device-1", "client_id": "user-42", "channel": "orders"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["channel"] == "orders" and r.json()["deviceId"] == "ios-device-1"
    # sockudo.publishPush({...}); console.log(response.publish_id)
    publish = {
        "recipients": [{"type": "channel", "channel": "orders"}, {"type": "client", "client_id": "user-42"}],
        "payload": {
            "title": "Order updated",
            "body": "Order ord_123 is packed",
            "data": {"order_id": "ord_123", "channel": "orders"},
        },
        "idempotency_key": "push-order-ord_123-packed",
        "sync": False,
    }
    r = await call(c, key, "POST", "/publish", publish)
    assert r.status_code == 202, r.text
    publish_id = r.json()["publish_id"]
    assert publish_id == r.json()["publishId"] and r.json()["status"] == "accepted"
    await wait_for(arrived(lab, token), 30, "the seed's publish at the lab")
    sent = lab.ledger("fcm", token)["items"][0]
    assert "ord_123" in str(sent)
    # The idempotency key: the same request is the same publish.
    again = await call(c, key, "POST", "/publish", publish)
    assert again.status_code == 202 and again.json()["publish_id"] == publish_id
    # sockudo.schedulePush({run_at, recipients, payload}); cancelScheduledPush(scheduled.publish_id)
    run_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    r = await call(
        c,
        key,
        "POST",
        "/publish",
        {
            "run_at": run_at,
            "recipients": [{"type": "client", "client_id": "user-42"}],
            "payload": {"title": "Reminder", "body": "Your room starts soon"},
        },
    )
    assert r.status_code == 202, r.text
    scheduled = r.json()["publish_id"]
    assert (await c.get(f"/v1/publishes/{scheduled}")).json()["status"] == "scheduled"
    r = await call(c, key, "DELETE", f"/scheduled/{scheduled}")
    assert r.status_code == 204, r.text
    assert (await c.get(f"/v1/publishes/{scheduled}")).json()["status"] == "cancelled"
    status = (await call(c, key, "GET", f"/publish/{scheduled}/status")).json()
    assert status["state"] == "cancelled" and status["publishId"] == scheduled


async def test_official_python_sdk(sgw: Gateway, lab: Lab) -> None:
    """``sockudo-http-python`` as a backend uses it: activate, subscribe, publish, status."""
    key = await new_key(sgw.client)
    port = int(sgw.url.rsplit(":", 1)[1])
    options = SockudoOptions(host="127.0.0.1", port=port, use_tls=False, max_retries=1)
    token = fcm_token()
    device = {
        "appId": key.app_id,
        "id": "sdk-device-1",
        "clientId": "user-7",
        "formFactor": "phone",
        "platform": "android",
        "metadata": {},
        "deviceSecret": "set-by-server",
        "timezone": "UTC",
        "locale": "en-US",
        "push": {"state": "ACTIVE", "recipient": {"transportType": "gcm", "registrationToken": token}},
    }
    async with AsyncSockudo(key.app_id, key.key, key.secret, options=options) as sdk:
        r = await sdk.activate_device(device)
        assert r.ok, r.message
        identity = r.json()["deviceIdentityToken"]
        r = await sdk.upsert_channel_push_subscription(
            {
                "appId": key.app_id,
                "channel": "news",
                "deviceId": "sdk-device-1",
                "provider": "fcm",
                "tokenHash": "-",
            }
        )
        assert r.ok, r.message
        # A device acting on itself with its identity token (push-subscribe).
        r = await sdk.get_device_registration("sdk-device-1", device_identity_token=identity)
        assert r.ok and r.json()["clientId"] == "user-7"
        r = await sdk.list_channel_push_subscriptions(
            PushSubscriptionParams(device_id="sdk-device-1"), device_identity_token=identity
        )
        assert r.ok and [i["channel"] for i in r.json()["items"]] == ["news"]
        r = await sdk.update_device_registration({**device, "locale": "fr-FR"}, identity)
        assert r.ok and r.json()["change"] == "updated" and "deviceIdentityToken" not in r.json()
        assert r.json()["device"]["locale"] == "fr-FR"
        r = await sdk.activate_device(device, rotate_device_identity_token=True)
        assert r.ok and r.json()["deviceIdentityToken"] not in (None, identity)
        bad = await sdk.get_device_registration("sdk-device-1", device_identity_token="not-a-token")
        assert bad.status_code == 401 and bad.json()["code"] == "auth_failed"
        r = await sdk.list_device_registrations(PushCursorParams(limit=10))
        assert r.ok and [d["id"] for d in r.json()["items"]] == ["sdk-device-1"]
        r = await sdk.publish_push(
            {
                "publishId": "sdk-pub-1",
                "recipients": [{"type": "channel", "channel": "news"}],
                "payload": {"title": "Breaking", "body": "via the SDK"},
            }
        )
        assert r.status_code == 202, r.message
        await wait_for(arrived(lab, token), 30, "the SDK's publish at the lab")
        r = await sdk.get_publish_status("sdk-pub-1")
        assert r.ok and r.json()["publishId"] == "sdk-pub-1"
        r = await sdk.publish_push_batch(
            [
                {
                    "recipients": [{"type": "device", "device_id": "sdk-device-1"}],
                    "payload": {"title": "one"},
                },
                {"recipients": [{"type": "client", "client_id": "user-7"}], "payload": {"title": "two"}},
            ]
        )
        assert r.status_code == 202 and len(r.json()["items"]) == 2
        await wait_for(arrived(lab, token, 3), 30, "the batch at the lab")
        r = await sdk.schedule_push(
            {
                "recipients": [{"type": "device", "device_id": "sdk-device-1"}],
                "payload": {"title": "later"},
                "notBeforeMs": int(time.time() * 1000) + 3_600_000,
            }
        )
        assert r.status_code == 202
        assert (await sdk.cancel_scheduled_push(r.json()["publishId"])).status_code == 204
        r = await sdk.delete_device_registration("sdk-device-1", device_identity_token=identity)
        assert r.status_code == 204
    assert (await sgw.client.get("/v1/devices/sdk-device-1")).status_code == 404
