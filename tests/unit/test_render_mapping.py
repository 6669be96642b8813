"""The unified notification's newer fields, rendered for FCM and Web Push (docs/mapping.md)."""

from __future__ import annotations

import json

import msgspec
import pytest

from pushgate.domain.notification import Notification
from pushgate.domain.render import render_fcm, render_webpush


def n(**fields: object) -> Notification:
    return msgspec.convert({"title": "T", **fields}, Notification)


def webpush_payload(**fields: object) -> dict[str, object]:
    return dict(json.loads(render_webpush(n(**fields)).payload))


ACTIONS = [
    {"id": "reply", "title": "Reply", "text_input": "Say something"},
    {"id": "later", "title": "Later"},
]


@pytest.mark.parametrize(
    ("fields", "path", "expected"),
    [
        ({"category": "MSG"}, ("apns", "payload", "aps", "category"), "MSG"),
        ({"thread_id": "chat-1"}, ("apns", "payload", "aps", "thread-id"), "chat-1"),
        ({"thread_id": "chat-1"}, ("android", "notification", "tag"), "chat-1"),
        ({"interruption_level": "time-sensitive"}, ("apns", "payload", "aps", "interruption-level"),
         "time-sensitive"),
        ({"channel_importance": "high"}, ("android", "notification", "notification_priority"),
         "PRIORITY_HIGH"),
        ({"channel_id": "orders"}, ("android", "notification", "channel_id"), "orders"),
        ({"click_action": "OPEN_ORDER"}, ("android", "notification", "click_action"), "OPEN_ORDER"),
        ({"url": "https://shop.example/o/1"}, ("webpush", "fcm_options", "link"), "https://shop.example/o/1"),
        ({"url": "https://shop.example/o/1"}, ("data", "url"), "https://shop.example/o/1"),
        ({"mutable_content": True}, ("apns", "payload", "aps", "mutable-content"), 1),
        ({"image": "https://i.example/a.png"}, ("apns", "fcm_options", "image"), "https://i.example/a.png"),
        ({"actions": ACTIONS}, ("webpush", "notification", "actions"), [
            {"action": "reply", "title": "Reply"}, {"action": "later", "title": "Later"}]),
    ],
)  # fmt: skip
def test_fcm_field_mapping(fields: dict[str, object], path: tuple[str, ...], expected: object) -> None:
    node: object = render_fcm(n(**fields), now=1_700_000_000)
    for key in path:
        assert isinstance(node, dict) and key in node, (fields, path)
        node = node[key]
    assert node == expected


def test_fcm_actions_travel_as_json_data() -> None:
    msg = render_fcm(n(actions=ACTIONS, data={"k": "v"}))
    assert msg["data"]["k"] == "v"
    assert json.loads(msg["data"]["actions"]) == [
        {"action": "reply", "title": "Reply", "type": "text", "placeholder": "Say something"},
        {"action": "later", "title": "Later"},
    ]
    assert all(isinstance(v, str) for v in msg["data"].values())


@pytest.mark.parametrize("flag", ["content_available", "background"])
def test_fcm_silent_push(flag: str) -> None:
    msg = render_fcm(n(**{flag: True, "data": {"sync": "1"}, "sound": "ding", "image": "https://i/x.png"}))
    assert "notification" not in msg  # a data-only message wakes the app without an alert
    assert msg["apns"]["headers"]["apns-push-type"] == "background"
    assert msg["apns"]["headers"]["apns-priority"] == "5"
    assert msg["apns"]["payload"]["aps"] == {"content-available": 1}
    assert msg["data"] == {"sync": "1"}


def test_fcm_non_https_url_is_not_a_webpush_link() -> None:
    msg = render_fcm(n(url="myapp://orders/1"))
    assert "webpush" not in msg and msg["data"]["url"] == "myapp://orders/1"


@pytest.mark.parametrize(
    ("fields", "key", "expected"),
    [
        ({"url": "https://s.example/x"}, "url", "https://s.example/x"),
        ({"click_action": "https://s.example/y"}, "url", "https://s.example/y"),
        ({"thread_id": "chat"}, "tag", "chat"),
        ({"thread_id": "chat", "collapse_key": "c"}, "tag", "c"),
        ({"category": "MSG"}, "category", "MSG"),
        ({"interruption_level": "critical"}, "requireInteraction", True),
        ({"background": True}, "silent", True),
        ({"image": "https://i.example/p.png"}, "image", "https://i.example/p.png"),
        ({"actions": ACTIONS}, "actions", [
            {"action": "reply", "title": "Reply", "type": "text", "placeholder": "Say something"},
            {"action": "later", "title": "Later"}]),
    ],
)  # fmt: skip
def test_webpush_field_mapping(fields: dict[str, object], key: str, expected: object) -> None:
    assert webpush_payload(**fields)[key] == expected


def test_webpush_passive_interruption_does_not_require_interaction() -> None:
    assert "requireInteraction" not in webpush_payload(interruption_level="passive")
