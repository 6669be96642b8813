"""Sockudo ``POST /deliveryStatus`` records its receipt as ``POST /v1/receipts`` does: the
``receipt`` webhook is queued, and a time in the future or before the publish is a 400."""

from __future__ import annotations

import time
from typing import Any

from support.api import fcm_token
from support.gateway import MASTER
from support.lab import Lab
from support.sockudo import call, new_key
from support.wait import wait_for
from test_webhooks import add_webhook, hooked_gateway, receiver


async def test_delivery_status_is_a_native_receipt(database_url: str, lab: Lab) -> None:
    async with hooked_gateway(database_url, lab, PUSHGATE_SECRET_KEY=MASTER) as gw, receiver() as rx:
        await add_webhook(gw, rx.url, ["receipt"])
        key = await new_key(gw.client)
        token = fcm_token()
        d: dict[str, Any] = {"id": "dev", "platform": "android"}
        d["push"] = {"recipient": {"transportType": "gcm", "registrationToken": token}}
        assert (await call(gw.client, key, "POST", "/deviceRegistrations", d)).status_code == 201
        pub = {
            "publishId": "p1",
            "recipients": [{"type": "device", "device_id": "dev"}],
            "payload": {"title": "x"},
        }
        assert (await call(gw.client, key, "POST", "/publish", pub)).status_code == 202
        publish_id = (await gw.client.get("/v1/publishes/p1")).json()["id"]
        await gw.wait_done(publish_id)

        def event(at_ms: int) -> dict[str, Any]:
            result = {"deviceId": "dev", "outcome": "accepted", "provider": "fcm"}
            return {"publishId": "p1", "eventId": "e", "occurredAtMs": at_ms, "result": result}

        now_ms = int(time.time() * 1000)
        for wrong in (now_ms + 3_600_000, 1_000_000_000_000):  # an hour ahead; 2001
            r = await call(gw.client, key, "POST", "/deliveryStatus", event(wrong))
            assert r.status_code == 400 and r.json()["code"] == "invalid_input", r.text
        r = await call(gw.client, key, "POST", "/deliveryStatus", event(now_ms))
        assert r.status_code == 202, r.text
        await wait_for(lambda: len(rx.events("receipt")) == 1, 10, "the receipt webhook")
        [sent] = rx.events("receipt")
        assert (sent["data"]["device_id"], sent["data"]["event"]) == ("dev", "delivered")
