"""Issue 3, acceptance 4: every mapped field, per provider, as /v1/publish/preview shows it.

One publish with every unified field set is previewed through the real API; each row names a
field, a provider and where that field must appear in the provider's native request.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.gateway import Gateway

FULL = {
    "title": "T",
    "body": "B",
    "data": {"k": "v"},
    "image": "https://i.example/a.png",
    "sound": "ding",
    "badge": 3,
    "ttl_seconds": 600,
    "priority": "high",
    "collapse_key": "ck",
    "category": "CAT",
    "thread_id": "th",
    "interruption_level": "time-sensitive",
    "channel_importance": "high",
    "actions": [{"id": "a1", "title": "Act"}],
    "mutable_content": True,
    "url": "https://s.example/u",
    "channel_id": "chan",
}

# (field, provider, path into request, expected value); "*" as expected means "present".
ROWS: list[tuple[str, str, tuple[str, ...], Any]] = [
    ("title", "fcm", ("body", "message", "notification", "title"), "T"),
    ("title", "apns", ("body", "aps", "alert", "title"), "T"),
    ("title", "webpush", ("body", "title"), "T"),
    ("title", "hms", ("body", "message", "android", "notification", "title"), "T"),
    ("title", "mipush", ("body", "title"), "T"),
    ("body", "fcm", ("body", "message", "notification", "body"), "B"),
    ("body", "apns", ("body", "aps", "alert", "body"), "B"),
    ("body", "hms", ("body", "message", "android", "notification", "body"), "B"),
    ("body", "mipush", ("body", "description"), "B"),
    ("data", "fcm", ("body", "message", "data", "k"), "v"),
    ("data", "apns", ("body", "k"), "v"),
    ("data", "webpush", ("body", "data"), {"k": "v"}),
    # With the publish's message id (docs/receipts.md), a placeholder in a preview.
    ("data", "hms", ("body", "message", "data"), '{"pushgate":{"p":"<publish id>"},"k":"v"}'),
    ("data", "mipush", ("body", "payload"), '{"pushgate":{"p":"<publish id>"},"k":"v"}'),
    ("image", "fcm", ("body", "message", "notification", "image"), "https://i.example/a.png"),
    ("image", "apns", ("body", "image_url"), "https://i.example/a.png"),
    ("image", "webpush", ("body", "image"), "https://i.example/a.png"),
    ("image", "hms", ("body", "message", "android", "notification", "image"), "https://i.example/a.png"),
    ("sound", "fcm", ("body", "message", "android", "notification", "sound"), "ding"),
    ("sound", "apns", ("body", "aps", "sound"), "ding"),
    ("sound", "hms", ("body", "message", "android", "notification", "sound"), "ding"),
    ("sound", "mipush", ("body", "extra.sound_uri"), "*"),
    ("badge", "apns", ("body", "aps", "badge"), 3),
    ("badge", "fcm", ("body", "message", "apns", "payload", "aps", "badge"), 3),
    ("badge", "webpush", ("body", "badge"), 3),
    ("ttl_seconds", "fcm", ("body", "message", "android", "ttl"), "600s"),
    ("ttl_seconds", "webpush", ("headers", "TTL"), "600"),
    ("ttl_seconds", "apns", ("headers", "apns-expiration"), "*"),
    ("ttl_seconds", "hms", ("body", "message", "android", "ttl"), "600s"),
    ("ttl_seconds", "wns", ("headers", "X-WNS-TTL"), "600"),
    ("ttl_seconds", "mipush", ("body", "time_to_live"), "600000"),
    ("priority", "fcm", ("body", "message", "android", "priority"), "HIGH"),
    ("priority", "apns", ("headers", "apns-priority"), "10"),
    ("priority", "webpush", ("headers", "Urgency"), "high"),
    ("priority", "hms", ("body", "message", "android", "urgency"), "HIGH"),
    ("collapse_key", "fcm", ("body", "message", "android", "collapse_key"), "ck"),
    ("collapse_key", "apns", ("headers", "apns-collapse-id"), "ck"),
    ("collapse_key", "webpush", ("headers", "Topic"), "ck"),
    ("collapse_key", "hms", ("body", "message", "android", "notification", "tag"), "ck"),
    ("collapse_key", "wns", ("headers", "X-WNS-Tag"), "ck"),
    ("collapse_key", "mipush", ("body", "notify_id"), "*"),
    ("category", "apns", ("body", "aps", "category"), "CAT"),
    ("category", "fcm", ("body", "message", "apns", "payload", "aps", "category"), "CAT"),
    ("category", "webpush", ("body", "category"), "CAT"),
    ("thread_id", "apns", ("body", "aps", "thread-id"), "th"),
    ("thread_id", "fcm", ("body", "message", "android", "notification", "tag"), "th"),
    ("thread_id", "hms", ("body", "message", "android", "notification", "group"), "th"),
    ("thread_id", "wns", ("headers", "X-WNS-Group"), "th"),
    ("interruption_level", "apns", ("body", "aps", "interruption-level"), "time-sensitive"),
    ("interruption_level", "webpush", ("body", "requireInteraction"), True),
    ("channel_importance", "fcm", ("body", "message", "android", "notification", "notification_priority"),
     "PRIORITY_HIGH"),
    ("channel_importance", "hms", ("body", "message", "android", "notification", "importance"), "NORMAL"),
    ("actions", "apns", ("body", "pushgate_actions"), [{"id": "a1", "title": "Act"}]),
    ("actions", "webpush", ("body", "actions"), [{"action": "a1", "title": "Act"}]),
    ("actions", "fcm", ("body", "message", "webpush", "notification", "actions"),
     [{"action": "a1", "title": "Act"}]),
    ("actions", "hms", ("body", "message", "android", "notification", "buttons"), "*"),
    ("mutable_content", "apns", ("body", "aps", "mutable-content"), 1),
    ("url", "fcm", ("body", "message", "webpush", "fcm_options", "link"), "https://s.example/u"),
    ("url", "apns", ("body", "url"), "https://s.example/u"),
    ("url", "webpush", ("body", "url"), "https://s.example/u"),
    ("url", "hms", ("body", "message", "android", "notification", "click_action", "url"), "https://s.example/u"),
    ("url", "mipush", ("body", "extra.web_uri"), "https://s.example/u"),
    ("channel_id", "fcm", ("body", "message", "android", "notification", "channel_id"), "chan"),
    ("channel_id", "hms", ("body", "message", "android", "notification", "channel_id"), "chan"),
    ("channel_id", "mipush", ("body", "extra.channel_id"), "chan"),
]  # fmt: skip

# WNS toast bodies are XML: the field must appear in the document.
WNS_XML: list[tuple[str, str]] = [
    ("title", ">T<"),
    ("body", ">B<"),
    ("image", 'src="https://i.example/a.png"'),
    ("sound", "<audio"),
    ("actions", 'arguments="a1"'),
    ("url", "https://s.example/u"),
]


@pytest.fixture
async def previews(gateway: Gateway) -> dict[str, Any]:
    body = {"recipients": [{"type": "channel", "channel": "c"}], "notification": FULL}
    r = await gateway.client.post("/v1/publish/preview", json=body)
    assert r.status_code == 200, r.text
    providers: dict[str, Any] = r.json()["providers"]
    assert set(providers) == {"fcm", "webpush", "apns", "hms", "wns", "mipush"}
    assert all(p["fits"] for p in providers.values())
    return providers


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_field_reaches_every_provider(previews: dict[str, Any]) -> None:
    missing = []
    for field, provider, path, expected in ROWS:
        node: Any = previews[provider]["request"]
        for key in path:
            if not isinstance(node, dict) or key not in node:
                node = KeyError
                break
            node = node[key]
        if node is KeyError or (expected != "*" and node != expected):
            missing.append((field, provider, path, node))
    wns = previews["wns"]["request"]
    xml = str(wns["body"])
    assert wns["headers"]["X-WNS-Type"] == "wns/toast"
    missing += [("wns", field, (text,), None) for field, text in WNS_XML if text not in xml]
    assert missing == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_silent_push_per_provider(gateway: Gateway) -> None:
    body = {
        "recipients": [{"type": "channel", "channel": "c"}],
        "notification": {"content_available": True, "data": {"sync": "1"}},
    }
    p = (await gateway.client.post("/v1/publish/preview", json=body)).json()["providers"]
    assert "notification" not in p["fcm"]["request"]["body"]["message"]
    assert p["apns"]["request"]["headers"]["apns-push-type"] == "background"
    assert p["apns"]["request"]["headers"]["apns-priority"] == "5"
    assert p["apns"]["request"]["body"]["aps"] == {"content-available": 1}
    assert p["webpush"]["request"]["body"]["silent"] is True
    assert "notification" not in p["hms"]["request"]["body"]["message"].get("android", {})
    assert p["wns"]["request"]["headers"]["X-WNS-Type"] == "wns/raw"
    assert p["mipush"]["request"]["body"]["pass_through"] == "1"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_oversize_is_refused_per_provider(gateway: Gateway) -> None:
    """Each provider's limit is checked at admission, naming provider, size and limit."""
    for provider, notification in [
        ("apns", {"title": "t", "data": {"blob": "x" * 4100}}),
        ("wns", {"title": "t" * 1000, "body": "b" * 4096}),
    ]:
        body = {"recipients": [{"type": "channel", "channel": "c"}], "notification": notification}
        preview = (await gateway.client.post("/v1/publish/preview", json=body)).json()["providers"]
        assert preview[provider]["fits"] is False, provider
        r = await gateway.client.post("/v1/publish", json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "payload_too_large"
        details = r.json()["error"]["details"]
        assert details["size"] > details["limit"] and details["provider"] in preview
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []
