"""The Web Push sender's parsed-subscription cache: one parse and one point load per subscription.

A fan-out meets most subscriptions for the first time; each used to be validated (loading the
P-256 point), re-encoded, decoded again and loaded a second time, and its breaker origin was
parsed from the endpoint once per message. These tests pin the single load and check that what
the cache keeps still encrypts for the browser and names the same origins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushgate.domain.render import WEBPUSH_NOT_ON_CURVE, b64url_encode, parse_webpush_subscription
from pushgate.domain.urls import parse_target
from pushgate.providers import webpush, webpush_crypto


def _token(point: bytes, endpoint: str) -> str:
    keys = {"p256dh": b64url_encode(point), "auth": b64url_encode(os.urandom(16))}
    return json.dumps({"endpoint": endpoint, "keys": keys}, separators=(",", ":"))


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    webpush._prepare_subscription.cache_clear()
    yield
    webpush._prepare_subscription.cache_clear()


def test_a_new_subscription_loads_its_point_once(monkeypatch: pytest.MonkeyPatch) -> None:
    browser = ec.generate_private_key(ec.SECP256R1())
    point = browser.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    token = _token(point, "https://push.example.net/send/abc123")
    loads: list[bytes] = []
    load = ec.EllipticCurvePublicKey.from_encoded_point

    def counting(cls: Any, curve: ec.EllipticCurve, data: bytes) -> ec.EllipticCurvePublicKey:
        loads.append(data)
        return load(curve, data)

    monkeypatch.setattr(ec.EllipticCurvePublicKey, "from_encoded_point", classmethod(counting))
    # What the dispatcher and the sender ask for each message: the origin, then the subscription.
    for _ in range(3):
        assert webpush.subscription_origin(token) == "https://push.example.net"
        webpush._prepare_subscription(token)
    assert loads == [point]


def test_the_cached_subscription_encrypts_for_its_browser_and_names_its_origins() -> None:
    browser = ec.generate_private_key(ec.SECP256R1())
    point = browser.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    endpoint = "http://127.0.0.1:8687/webpush/push/xyz?x=1"
    token = _token(point, endpoint)
    sub = webpush._prepare_subscription(token)
    auth = json.loads(token)["keys"]["auth"]
    assert sub.recipient.public_bytes == point
    assert b64url_encode(sub.recipient.auth_secret) == auth
    assert sub.endpoint == endpoint
    assert sub.origin == webpush.endpoint_origin(endpoint) == "http://127.0.0.1:8687"
    assert sub.target_origin == parse_target(endpoint).origin
    body = webpush_crypto.encrypt(b"order 1234 shipped", sub.recipient)
    clear = http_ece.decrypt(
        body, private_key=browser, auth_secret=sub.recipient.auth_secret, version="aes128gcm"
    )
    assert clear == b"order 1234 shipped"


def test_a_point_off_the_curve_is_refused_with_the_field_it_is_in() -> None:
    off_curve = b"\x04" + (1).to_bytes(32, "big") + (1).to_bytes(32, "big")
    token = _token(off_curve, "https://push.example.net/send/abc123")
    with pytest.raises(ValueError, match="^" + WEBPUSH_NOT_ON_CURVE + "$"):
        webpush._prepare_subscription(token)
    with pytest.raises(ValueError, match="^" + WEBPUSH_NOT_ON_CURVE + "$"):
        parse_webpush_subscription(token)
    assert webpush.subscription_origin(token) is None
