"""POST /v1/publish/preview: each targeted provider's request and size, nothing sent or stored."""

from __future__ import annotations

from support.gateway import Gateway
from support.lab import Lab


async def test_preview_renders_without_sending(gateway: Gateway, lab: Lab) -> None:
    body = {
        "recipients": [{"type": "channel", "channel": "orders"}],
        "notification": {
            "title": "Shipped",
            "body": "Order 42",
            "data": {"order": "42"},
            "collapse_key": "order-42",
            "ttl_seconds": 600,
            "priority": "high",
        },
        "providers": {"webpush": {"headers": {"Urgency": "low"}}},
    }
    r = await gateway.client.post("/v1/publish/preview", json=body)
    assert r.status_code == 200, r.text
    providers = r.json()["providers"]
    assert {"fcm", "webpush"} <= set(providers)  # plus every other provider the lab config enables
    fcm = providers["fcm"]
    message = fcm["request"]["body"]["message"]
    assert message["notification"] == {"title": "Shipped", "body": "Order 42"}
    # The message ids, with placeholders (docs/receipts.md).
    assert message["data"] == {"pushgate": '{"p":"<publish id>","d":"<delivery id>"}', "order": "42"}
    assert message["android"]["ttl"] == "600s" and message["token"] == "<device token>"
    assert fcm["limit"] == 4096 and fcm["fits"] is True and 0 < fcm["size"] < 4096
    web = providers["webpush"]
    assert web["request"]["headers"]["Urgency"] == "low" and web["request"]["headers"]["TTL"] == "600"
    assert web["request"]["body"]["title"] == "Shipped" and web["limit"] == 3993
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []
    assert lab.ledger()["total"] == 0


async def test_preview_reports_oversize_and_unrenderable(gateway: Gateway) -> None:
    big = {
        "recipients": [{"type": "channel", "channel": "c"}],
        "notification": {"title": "t" * 200, "body": "x" * 4000},
    }
    providers = (await gateway.client.post("/v1/publish/preview", json=big)).json()["providers"]
    assert providers["fcm"]["fits"] is False and providers["fcm"]["size"] > 4096
    assert providers["webpush"]["fits"] is False and providers["webpush"]["size"] > 3993
    # The same body is refused at admission, naming the provider, size and limit.
    r = await gateway.client.post("/v1/publish", json=big)
    assert r.status_code == 400 and r.json()["error"]["code"] == "payload_too_large"
    # Only a Web Push override: FCM has nothing to render, Web Push does.
    only_web = {
        "recipients": [{"type": "channel", "channel": "c"}],
        "providers": {"webpush": {"payload": {"custom": 1}}},
    }
    providers = (await gateway.client.post("/v1/publish/preview", json=only_web)).json()["providers"]
    assert "nothing to send to fcm" in providers["fcm"]["error"]
    ids = {"p": "<publish id>", "d": "<delivery id>"}
    assert providers["webpush"]["request"]["body"] == {"pushgate": ids, "custom": 1}
    # Published, it goes to the Web Push devices only (the others are ``skipped``,
    # ``no_payload_for_provider``: tests/integration/test_policy_planning.py).
    r = await gateway.client.post("/v1/publish", json=only_web)
    assert r.status_code == 202, r.text
