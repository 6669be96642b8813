"""Fuzzing the Sockudo front-end (its routes are not in ``/openapi.json``, issue 14 acceptance
5): correctly signed requests with random and mutated bodies and queries never get a 5xx, and
every error is Sockudo's shape. Seeded, so a failure replays."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.sockudo import SockudoKey, call, new_key

SEED = 1414
ROUTES = [
    ("POST", "/deviceRegistrations"),
    ("POST", "/channelSubscriptions"),
    ("POST", "/publish"),
    ("POST", "/batch/publish"),
    ("POST", "/templates"),
    ("POST", "/credentials/webPush"),
    ("POST", "/deliveryStatus"),
]
VALID: dict[str, Any] = {
    "/deviceRegistrations": {
        "id": "fz-1",
        "platform": "android",
        "formFactor": "phone",
        "timezone": "UTC",
        "locale": "en",
        "metadata": {"a": 1},
        "push": {"recipient": {"transportType": "gcm", "registrationToken": "fcm_fuzz"}},
    },
    "/channelSubscriptions": {"channel": "news", "deviceId": "fz-1"},
    "/publish": {
        "publishId": "fz-pub",
        "recipients": [{"type": "channel", "channel": "news"}, {"type": "device", "device_id": "fz-1"}],
        "payload": {"title": "t", "body": "b", "templateData": {"k": [1, 2]}},
        "notBeforeMs": 1,
        "expiresAtMs": 4102444800000,
    },
    "/batch/publish": [{"recipients": [{"type": "client", "client_id": "u"}], "payload": {"title": "t"}}],
    "/templates": {"templateId": "fz", "defaultLocale": "en", "locales": {"en": {"title": "hi"}}},
    "/credentials/webPush": {"publicKey": "x", "privateKey": "y"},
    "/deliveryStatus": {"publishId": "p", "eventId": "e", "occurredAtMs": 1, "result": {}},
}
ODD = ["", "\x00", "é" * 300, "a" * 5000, "{{ x", "../..", "https://", "ACTIVE", "gcm", "channel"]


def junk(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 2**64 + 5, 1.5, -1e308])
    if kind in (3, 4):
        return rng.choice(ODD)
    if kind == 5:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["type", "id", "push", "payload", "x", "channel"]): junk(rng, depth + 1) for _ in range(3)
    }


def mutate(rng: random.Random, value: Any) -> Any:
    """The valid body with one field somewhere dropped or replaced by junk."""
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        out = dict(value)
        roll = rng.random()
        if roll < 0.3:
            del out[key]
        elif roll < 0.6:
            out[key] = junk(rng)
        else:
            out[key] = mutate(rng, value[key])
        return out
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return [*value[:i], mutate(rng, value[i]), *value[i + 1 :]]
    return junk(rng)


@pytest.fixture
async def env(database_url: str, lab: Lab) -> AsyncIterator[tuple[Gateway, SockudoKey]]:
    lab.reset()
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as gw:
        yield gw, await new_key(gw.client)


async def test_signed_junk_never_breaks_the_front_end(env: tuple[Gateway, SockudoKey]) -> None:
    gw, key = env
    rng = random.Random(SEED)
    seen: set[int] = set()
    for round_ in range(25):
        for method, suffix in ROUTES:
            body = junk(rng) if round_ % 3 == 0 else mutate(rng, VALID[suffix])
            r = await call(gw.client, key, method, suffix, body if body is not None else {})
            seen.add(r.status_code)
            assert r.status_code < 500 or r.status_code == 501, (suffix, body, r.text)
            if r.status_code >= 400:
                assert set(r.json()) == {"error", "code", "status"}, (suffix, body, r.text)
    for suffix in (
        "/deviceRegistrations",
        "/channelSubscriptions",
        "/deadLetters",
        "/channelSubscriptions/channels",
    ):
        for _ in range(10):
            params = {
                rng.choice(["limit", "cursor", "deviceId", "channel", "sinceMs", "provider"]): rng.choice(ODD)
            }
            r = await call(gw.client, key, "GET", suffix, params=params)
            assert r.status_code < 500, (suffix, params, r.text)
    # The fuzz reached past validation too (not every request was refused).
    assert 400 in seen and seen & {201, 202}
