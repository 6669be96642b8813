"""Pure rendering: field mapping, overrides, sizes, reserved keys, subscriptions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushgate.domain import message_ids
from pushgate.domain import render_fcm as fcm_rendering
from pushgate.domain import render_webpush as webpush_rendering
from pushgate.domain.notification import FcmOverride, Notification, WebPushOverride
from pushgate.domain.render import (
    LIMITS,
    WebPushRendered,
    b64url_encode,
    deep_merge,
    endpoint_is_loopback_or_insecure,
    parse_webpush_subscription,
    render_fcm,
    render_webpush,
    validate_fcm_data,
    webpush_token_string,
    webpush_topic,
)
from pushgate.domain.rendering import oversize

FULL = Notification(
    title="Hi",
    body="There",
    data={"k": "v"},
    image="https://img.example/x.png",
    sound="default",
    badge=3,
    ttl_seconds=3600,
    priority="high",
    collapse_key="c1",
)


# ------------------------------------------------------------------ deep_merge


def test_deep_merge_override_wins_and_nested_merge() -> None:
    base = {"a": 1, "n": {"x": 1, "y": {"z": 1}}, "keep": True}
    out = deep_merge(base, {"a": 2, "n": {"y": {"w": 2}, "x": 5}, "new": [1]})
    assert out == {"a": 2, "n": {"x": 5, "y": {"z": 1, "w": 2}}, "keep": True, "new": [1]}
    assert base == {"a": 1, "n": {"x": 1, "y": {"z": 1}}, "keep": True}  # not mutated


def test_deep_merge_none_deletes() -> None:
    base = {"a": 1, "n": {"x": 1, "y": 2}}
    assert deep_merge(base, {"a": None, "n": {"y": None}, "missing": None}) == {"n": {"x": 1}}


def test_deep_merge_dict_replaces_scalar_and_scalar_replaces_dict() -> None:
    assert deep_merge({"a": 1, "b": {"c": 1}}, {"a": {"x": 1, "gone": None}, "b": 7}) == {
        "a": {"x": 1},
        "b": 7,
    }


def test_deep_merge_does_not_alias_override() -> None:
    override = {"n": {"x": 1}}
    out = deep_merge({}, override)
    out["n"]["x"] = 2
    assert override == {"n": {"x": 1}}


# ------------------------------------------------------------------ FCM


def test_render_fcm_full_mapping() -> None:
    msg = render_fcm(FULL, None, now=1_700_000_000)
    assert msg == {
        "notification": {"title": "Hi", "body": "There", "image": "https://img.example/x.png"},
        "data": {"k": "v"},
        "android": {
            "ttl": "3600s",
            "priority": "HIGH",
            "collapse_key": "c1",
            "notification": {"sound": "default"},
        },
        "apns": {
            "headers": {"apns-priority": "10", "apns-collapse-id": "c1", "apns-expiration": "1700003600"},
            # An image needs a notification service extension on iOS: mutable-content + fcm_options.
            "payload": {"aps": {"sound": "default", "badge": 3, "mutable-content": 1}},
            "fcm_options": {"image": "https://img.example/x.png"},
        },
        "webpush": {"headers": {"TTL": "3600", "Urgency": "high", "Topic": "c1"}},
    }
    assert "token" not in msg and "topic" not in msg


def test_render_fcm_only_what_is_set() -> None:
    assert render_fcm(Notification(title="t")) == {"notification": {"title": "t"}}
    assert render_fcm(Notification()) == {}
    msg = render_fcm(Notification(priority="normal", ttl_seconds=0))
    assert msg["android"] == {"ttl": "0s", "priority": "NORMAL"}
    assert msg["apns"] == {"headers": {"apns-priority": "5", "apns-expiration": "0"}}
    assert msg["webpush"] == {"headers": {"TTL": "0", "Urgency": "normal"}}


def test_render_fcm_long_collapse_key_is_valid_everywhere() -> None:
    key = "k" * 100
    msg = render_fcm(Notification(collapse_key=key))
    assert msg["android"]["collapse_key"] == key
    assert len(msg["apns"]["headers"]["apns-collapse-id"]) == 64
    assert len(msg["webpush"]["headers"]["Topic"]) == 32


def test_render_fcm_override_deep_merged() -> None:
    override = FcmOverride(
        message={
            "android": {"priority": "NORMAL", "ttl": None},
            "apns": None,
            "fcm_options": {"analytics_label": "x"},
        }
    )
    msg = render_fcm(FULL, override, now=0)
    assert msg["android"] == {
        "priority": "NORMAL",
        "collapse_key": "c1",
        "notification": {"sound": "default"},
    }
    assert "apns" not in msg
    assert msg["fcm_options"] == {"analytics_label": "x"}
    assert msg["notification"]["title"] == "Hi"


@pytest.mark.parametrize("key", ["from", "gcm", "message_type", "google", "google.c.a", "googleX", "gcm.n.e"])
def test_validate_fcm_data_rejects_reserved(key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        validate_fcm_data({"ok": "1", key: "v"})


@pytest.mark.parametrize("data", [None, {}, {"fromage": "x", "k": "v", "my_google": "y", "type": "z"}])
def test_validate_fcm_data_accepts(data: dict[str, str] | None) -> None:
    validate_fcm_data(data)


def test_validate_fcm_data_rejects_non_string_values() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        validate_fcm_data({"n": 1})


# ------------------------------------------------------------------ Web Push


def test_render_webpush_full_mapping() -> None:
    r = render_webpush(FULL)
    assert isinstance(r, WebPushRendered)
    assert json.loads(r.payload) == {
        "title": "Hi",
        "body": "There",
        "data": {"k": "v"},
        "image": "https://img.example/x.png",
        "badge": 3,
        "sound": "default",
        "tag": "c1",
    }
    assert b" " not in r.payload.replace(b"There", b"")  # compact JSON
    assert r.headers == {"TTL": "3600", "Urgency": "high", "Topic": "c1"}


def test_render_webpush_defaults() -> None:
    r = render_webpush(Notification(body="b"))
    assert json.loads(r.payload) == {"body": "b"}
    assert r.headers == {"TTL": "86400", "Urgency": "normal"}
    assert render_webpush(Notification(), default_ttl=60).headers["TTL"] == "60"
    assert render_webpush(Notification(priority="normal", ttl_seconds=0)).headers == {
        "TTL": "0",
        "Urgency": "normal",
    }


def test_render_webpush_override() -> None:
    override = WebPushOverride(
        payload={"data": {"extra": "1"}, "image": None, "actions": [{"action": "open"}]},
        headers={"urgency": "very-low", "Topic": "", "X-Extra": "1"},
    )
    r = render_webpush(FULL, override)
    payload = json.loads(r.payload)
    assert payload["data"] == {"k": "v", "extra": "1"}
    assert "image" not in payload
    assert payload["actions"] == [{"action": "open"}]
    assert r.headers == {"TTL": "3600", "urgency": "very-low", "X-Extra": "1"}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("c1", "c1"),
        ("abcd", "abcd"),
        ("A" * 32, "A" * 32),
        ("a-b_c", "a-b_c"),  # length 5 ≡ 1 mod 4 → hashed
        ("a", None),
        ("has space", None),
        ("A" * 33, None),
        ("é", None),
        ("a+b/", None),
    ],
)
def test_webpush_topic(key: str, expected: str | None) -> None:
    topic = webpush_topic(key)
    if expected is not None and len(key) % 4 != 1:
        assert topic == expected
    else:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", topic)
        assert topic == webpush_topic(key)  # stable
    assert len(topic) % 4 != 1


# ------------------------------------------------------------------ sizes


def test_size_fcm_counts_compact_message_json() -> None:
    # The longest message ids are counted (docs/receipts.md): a data entry, and a data object
    # for a message without one.
    ids = message_ids.overhead(string=True) + len('"data":{},')
    msg = render_fcm(Notification(title="t"))
    assert fcm_rendering.RENDERER.size(msg) == len(b'{"notification":{"title":"t"}}') + ids
    base = len(json.dumps({"data": {"k": ""}}, separators=(",", ":"))) + ids
    exact = {"data": {"k": "x" * (LIMITS["fcm"] - base)}}
    assert fcm_rendering.RENDERER.size(exact) == 4096
    assert oversize(fcm_rendering.RENDERER, exact) is None
    over = {"data": {"k": "x" * (LIMITS["fcm"] - base + 1)}}
    assert oversize(fcm_rendering.RENDERER, over) == (4097, 4096)


def test_size_webpush_counts_plaintext() -> None:
    # The longest message ids are counted (docs/receipts.md).
    ids = message_ids.overhead()
    base = len(render_webpush(Notification(body="")).payload) + ids
    ok = render_webpush(Notification(body="x" * (3993 - base)))
    assert webpush_rendering.RENDERER.size(ok) == 3993
    assert oversize(webpush_rendering.RENDERER, ok) is None
    over = render_webpush(Notification(body="x" * (3994 - base)))
    assert oversize(webpush_rendering.RENDERER, over) == (3994, 3993)
    # multi-byte characters count as bytes
    assert webpush_rendering.RENDERER.size(render_webpush(Notification(body="é"))) == ids + len(
        '{"body":"é"}'.encode()
    )


# ------------------------------------------------------------------ subscriptions


def _keys() -> tuple[bytes, bytes]:
    k = ec.generate_private_key(ec.SECP256R1())
    return k.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint), b"0123456789abcdef"


def _sub(**over: object) -> dict[str, object]:
    pub, auth = _keys()
    sub: dict[str, object] = {
        "endpoint": "https://push.example.com/send/abc",
        "keys": {"p256dh": b64url_encode(pub), "auth": b64url_encode(auth)},
    }
    sub.update(over)
    return sub


def test_parse_subscription_object_and_string_normalised() -> None:
    pub, auth = _keys()
    import base64

    padded = {
        "endpoint": "https://push.example.com/send/abc",
        "expirationTime": None,
        "keys": {"auth": base64.urlsafe_b64encode(auth).decode(), "p256dh": base64.b64encode(pub).decode()},
    }
    parsed = parse_webpush_subscription(padded)
    assert parsed == {
        "endpoint": "https://push.example.com/send/abc",
        "keys": {"p256dh": b64url_encode(pub), "auth": b64url_encode(auth)},
    }
    assert parse_webpush_subscription(json.dumps(padded)) == parsed
    token = webpush_token_string(parsed)
    assert token == (
        '{"endpoint":"https://push.example.com/send/abc","keys":{"p256dh":"'
        + b64url_encode(pub)
        + '","auth":"'
        + b64url_encode(auth)
        + '"}}'
    )
    assert parse_webpush_subscription(token) == parsed
    assert webpush_token_string(parse_webpush_subscription(token)) == token


def _bad_point() -> str:
    raw = bytearray(_keys()[0])
    raw[-1] ^= 1  # almost surely off the curve
    return b64url_encode(bytes(raw))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: "not json", "subscription"),
        (lambda s: "[1]", "subscription"),
        (lambda s: {**s, "endpoint": None}, "endpoint"),
        (lambda s: {**s, "endpoint": "/relative/path"}, "endpoint"),
        (lambda s: {**s, "endpoint": "ftp://push.example.com/x"}, "endpoint"),
        (lambda s: {**s, "endpoint": "https:///nohost"}, "endpoint"),
        (lambda s: {**s, "endpoint": "https://h:99999/x"}, "endpoint"),
        (lambda s: {**s, "keys": None}, "keys"),
        (lambda s: {**s, "keys": {"auth": s["keys"]["auth"]}}, "keys.p256dh"),
        (lambda s: {**s, "keys": {**s["keys"], "p256dh": "!!!"}}, "keys.p256dh"),
        (lambda s: {**s, "keys": {**s["keys"], "p256dh": b64url_encode(b"\x04" + b"1" * 63)}}, "keys.p256dh"),
        (lambda s: {**s, "keys": {**s["keys"], "p256dh": b64url_encode(b"\x02" + b"1" * 64)}}, "keys.p256dh"),
        (lambda s: {**s, "keys": {**s["keys"], "p256dh": _bad_point()}}, "keys.p256dh"),
        (lambda s: {**s, "keys": {"p256dh": s["keys"]["p256dh"]}}, "keys.auth"),
        (lambda s: {**s, "keys": {**s["keys"], "auth": b64url_encode(b"x" * 15)}}, "keys.auth"),
        (lambda s: {**s, "keys": {**s["keys"], "auth": "a"}}, "keys.auth"),
    ],
)
def test_parse_subscription_rejects_each_bad_field(mutate: Any, field: str) -> None:
    bad = mutate(_sub())
    with pytest.raises(ValueError) as info:
        parse_webpush_subscription(bad)
    assert str(info.value).startswith(field + ":"), str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://fcm.googleapis.com/fcm/send/x", False),
        ("https://updates.push.services.mozilla.com/wpush/v2/x", False),
        ("https://8.8.8.8/x", False),
        ("http://fcm.googleapis.com/x", True),
        ("https://localhost/x", True),
        ("https://foo.localhost/x", True),
        ("https://127.0.0.1:8443/x", True),
        ("https://10.1.2.3/x", True),
        ("https://192.168.1.1/x", True),
        ("https://169.254.169.254/latest", True),
        ("https://[::1]/x", True),
        ("https://[::ffff:127.0.0.1]/x", True),
        ("https://0.0.0.0/x", True),
        ("not a url", True),
    ],
)
def test_endpoint_is_loopback_or_insecure(endpoint: str, expected: bool) -> None:
    assert endpoint_is_loopback_or_insecure(endpoint) is expected
