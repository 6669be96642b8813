"""The Sentori front-end's pure translations (``pushgate/api/compat/sentori/mapping.py``)."""

from __future__ import annotations

import msgspec
import pytest
from litestar.routes import HTTPRoute

from pushgate.api.compat.sentori.mapping import (
    TargetError,
    Targets,
    audience_filter,
    delivery_id,
    device_id_of,
    handle_of,
    is_expo_token,
    notification_of,
    split_delivery_id,
    text_map,
    trait_filter,
)
from pushgate.config import Settings
from pushgate.domain.scopes import Scope
from pushgate.server import create_app


def test_handles_and_delivery_ids_round_trip() -> None:
    assert handle_of("dev_0abc") == "ipt_0abc" and device_id_of("ipt_0abc") == "dev_0abc"
    assert device_id_of("dev_0abc") == "dev_0abc"
    assert device_id_of("ipt_") is None and device_id_of("abc") is None and device_id_of("dev_") is None
    assert split_delivery_id(delivery_id("pub_1", "dev_2")) == ("pub_1", "dev_2")
    assert split_delivery_id("pub_1.tok_a.b") == ("pub_1", "tok_a.b")
    for bad in ("pub_1", "x.dev_2", "pub_1.", ""):
        assert split_delivery_id(bad) is None


def test_expo_tokens() -> None:
    assert is_expo_token("ExponentPushToken[abc]") and is_expo_token("ExpoPushToken[a-b_c]")
    for bad in (
        "ExponentPushToken[]",
        "ExponentPushToken[abc",
        "xExponentPushToken[a]",
        "ExponentPushToken[a]x",
    ):
        assert not is_expo_token(bad)


def test_targets_sort_each_expression() -> None:
    t = Targets()
    for expr in ("ipt_1", "user:u", "install:i", "topic:news", "token:ipt_2", "ExponentPushToken[e]"):
        t.add_expression(expr)
    t.add_object({"userFingerprintHex": "ab01"})
    t.add_object({"installId": "j"})
    assert t.device_ids == ["dev_1", "dev_2"] and t.installs == ["i", "j"]
    assert t.expo_tokens == ["ExponentPushToken[e]"]
    assert t.recipients == [
        {"type": "user", "user": "u"},
        {"type": "channel", "channel": "news"},
        {"type": "user", "user": "ab01"},
    ]
    assert not t.empty() and Targets().empty()
    for bad_expr in ("someone", "user:", "nope:x"):
        with pytest.raises(TargetError):
            Targets().add_expression(bad_expr)
    for bad_obj in (
        {"userFingerprintHex": "xyz"},
        {"userFingerprintHex": "abc"},
        {"topic": ""},
        {"a": "b"},
        {},
    ):
        with pytest.raises(TargetError):
            Targets().add_object(bad_obj)


def test_audience_translation() -> None:
    tree = {
        "all": [
            {"trait": "plan", "is": "pro"},
            {"trait": "n", "in": [1, "2"]},
            {"any": [{"user": "u"}, {"device": "appVersion", "versionGte": "4.2"}]},
            {"device": "kind", "in": ["hcm", "fcm"]},
            {"not": {"device": "platform", "is": "ios"}},
        ]
    }
    assert audience_filter(tree) == {
        "all": [
            {"tag": "plan", "is": "pro"},
            {"tag": "n", "in": ["1", "2"]},
            {"any": [{"user": {"is": "u"}}, {"app_version": {"gte": "4.2"}}]},
            {"provider": {"in": ["hms", "fcm"]}},
            {"not": {"platform": {"is": "ios"}}},
        ]
    }
    assert trait_filter({"beta": True}) == {"all": [{"tag": "beta", "is": "true"}]}
    for bad in (
        {},
        {"any": "x"},
        {"trait": "a"},
        {"trait": "a", "is": 1, "in": []},
        {"device": "x", "is": 1},
        [1],
    ):
        with pytest.raises(TargetError):
            audience_filter(bad)
    with pytest.raises(TargetError):
        trait_filter({})


def test_notification_options() -> None:
    got = notification_of(
        "T",
        "B",
        {"n": 1, "s": "x"},
        {
            "richMedia": {"imageUrl": "https://i"},
            "actions": [{"id": "R", "title": "Reply", "isTextInput": True}, {"id": "D", "title": "Dismiss"}],
            "interruptionLevel": "timeSensitive",
            "threadIdentifier": "t",
            "channelImportance": "high",
            "badge": 3,
        },
    )
    assert got == {
        "title": "T",
        "body": "B",
        "data": {"n": "1", "s": "x"},
        "image": "https://i",
        "actions": [{"id": "R", "title": "Reply", "text_input": "Reply"}, {"id": "D", "title": "Dismiss"}],
        "interruption_level": "time-sensitive",
        "thread_id": "t",
        "channel_importance": "high",
        "badge": 3,
    }
    assert notification_of(None, None, None, None) == {}
    assert text_map(None) is None and text_map({"a": [1]}) == {"a": "[1]"}


def test_every_sentori_route_names_its_scope() -> None:
    """The front-end's routes are under ``/v1`` but not the native router's: each says the
    scope it needs (reads ``read``; sends ``publish``; the rest ``register``), none falls to a
    default."""
    app = create_app(Settings())
    scopes = {
        (method, route.path): handler.opt.get("scope")
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/v1/push/")
        for handler in route.route_handlers
        for method in handler.http_methods
        if method != "OPTIONS"
    }
    assert len(scopes) == 25
    for (method, path), scope in scopes.items():
        if method == "GET" or path.endswith(("/count", "/receipts", "/getReceipts")):
            assert scope is Scope.READ, (method, path)
        elif path.endswith(("/send", "/sends")):
            assert scope is Scope.PUBLISH, (method, path)
        else:
            assert scope is Scope.REGISTER, (method, path)


def _sentori_paths(**section: object) -> set[str]:
    settings = msgspec.convert({"compat": {"sentori": section}}, Settings)
    return {r.path for r in create_app(settings).routes if "/v1/push/" in r.path}


def test_sentori_is_mounted_by_default_moved_by_its_prefix_and_off_when_disabled() -> None:
    assert "/v1/push/send" in _sentori_paths() and "/v1/push/expo-compat/push/send" in _sentori_paths()
    moved = _sentori_paths(prefix="/sentori")
    assert "/sentori/v1/push/send" in moved and not any(p.startswith("/v1/push") for p in moved)
    assert _sentori_paths(enabled=False) == set()
