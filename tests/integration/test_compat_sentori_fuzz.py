"""Fuzzing the Sentori front-end (its routes are not in /openapi.json, so the OpenAPI fuzzing
does not reach them): seeded random mutations of valid bodies and paths, against both
databases. Whatever arrives, the answer is never a 5xx and an error is in the route's own shape
(Sentori's ``{"error": str}``, Expo's ``{"errors": [{"code", "message"}]}``)."""

from __future__ import annotations

import random
from typing import Any

from support.api import fcm_token
from support.gateway import Gateway

#: Bodies tried per route (seeded: a failure reproduces).
TRIES = 25

_WORDS = [
    "",
    "ipt_",
    "ipt_x",
    "dev_",
    "user:",
    "user:u",
    "install:i",
    "topic:a b",
    "topic:news",
    "token:abc",
    "ExponentPushToken[x]",
    "ExponentPushToken[]",
    "pub_x.dev_y",
    "é" * 300,
    "x" * 5000,
    "2026-06-11T08:00:00Z",
    "not-a-time",
    "fcm",
    "apns",
    "hcm",
    "{}",
    '{"endpoint": "http://127.0.0.1/x"}',
    "a/b",
    "%",
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**70, -(2**70), 42])
    if kind == 3:
        return rng.choice([0.5, -1e300, 1e300, 3.0])
    if kind in (4, 5):
        return rng.choice(_WORDS)
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["to", "title", "body", "data", "options", "all", "any", "trait", "is", "in", "device", "topic"]
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _mutate(rng: random.Random, body: Any) -> Any:
    if not isinstance(body, dict) or rng.random() < 0.1:
        return _value(rng)
    out = dict(body)
    for key in list(out):
        if rng.random() < 0.4:
            out[key] = _value(rng)
        elif isinstance(out[key], dict) and rng.random() < 0.5:
            out[key] = _mutate(rng, out[key])
    if rng.random() < 0.3:
        out[rng.choice(["extra", "to", "payload", "audience", "traits", "sendAt", "kind"])] = _value(rng)
    return out


async def test_random_bodies_never_5xx(gateway: Gateway) -> None:
    c = gateway.client
    r = await c.post("/v1/push/devices", json={"kind": "fcm", "nativeToken": fcm_token(), "installId": "i"})
    ipt = r.json()["spToken"]
    valid: list[tuple[str, str, Any]] = [
        (
            "POST",
            "/v1/push/tokens",
            {"kind": "fcm", "nativeToken": fcm_token(), "installId": "i2", "traits": {"a": 1}},
        ),
        (
            "POST",
            "/v1/push/devices",
            {"kind": "apns", "nativeToken": "ab" * 32, "env": "sandbox", "metadata": {}},
        ),
        (
            "POST",
            "/v1/push/send",
            {"to": ipt, "title": "t", "body": "b", "data": {"k": 1}, "options": {"badge": 1}},
        ),
        (
            "POST",
            "/v1/push/sends",
            {
                "spTokens": [ipt],
                "payload": {"title": "t"},
                "campaignId": "c",
                "sendAt": "2026-06-11T08:00:00Z",
            },
        ),
        (
            "POST",
            "/v1/push/sends",
            {"audience": {"all": [{"trait": "a", "is": "1"}]}, "payload": {"body": "x"}},
        ),
        ("POST", f"/v1/push/tokens/{ipt}/topics", {"topic": "news"}),
        ("POST", "/v1/push/sends/pub_x/ack", {"ackSessionId": "s"}),
        ("PUT", "/v1/push/users/u1/preferences/marketing", {"optedOut": True}),
        ("POST", "/v1/push/audience/count", {"traits": {"a": "1"}, "audience": {"any": [{"user": "u"}]}}),
        (
            "POST",
            "/v1/push/expo-compat/send",
            [{"to": ipt, "title": "t", "data": {"a": 1}, "priority": "high"}],
        ),
        ("POST", "/v1/push/expo-compat/push/getReceipts", {"ids": ["pub_x.dev_y"]}),
    ]
    rng = random.Random(14)
    for method, path, body in valid:
        for _ in range(TRIES):
            sent = _mutate(rng, body)
            r = await c.request(method, path, json=sent)
            assert r.status_code < 500, (path, sent, r.text)
            if r.status_code >= 400:
                shape = r.json()
                if "/expo-compat/" in path:
                    assert isinstance(shape["errors"][0]["code"], str), (path, sent, r.text)
                else:
                    assert isinstance(shape["error"], str), (path, sent, r.text)
    for word in _WORDS[:14]:
        for template in ("/v1/push/sends/{}", "/v1/push/deliveries/{}", "/v1/push/expo-compat/receipts/{}"):
            r = await c.get(template.format(word.replace("%", "%25")))
            assert r.status_code in (400, 404, 405), (template, word, r.text)
