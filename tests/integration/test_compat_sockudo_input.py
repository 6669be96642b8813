"""Sockudo front-end: bad input answers Sockudo's error shape with its status (issue 14,
acceptance 5), and nothing invalid is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from support.api import fcm_token
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.sockudo import SockudoKey, call, new_key, signed_query


@pytest.fixture
async def env(database_url: str, lab: Lab) -> AsyncIterator[tuple[Gateway, SockudoKey]]:
    lab.reset()
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as gw:
        yield gw, await new_key(gw.client)


def shape(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "code", "status"} and (body["code"], body["status"]) == (code, status), body


def device(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": "dev-1",
        "platform": "android",
        "formFactor": "phone",
        "timezone": "UTC",
        "locale": "en",
        "push": {"recipient": {"transportType": "gcm", "registrationToken": fcm_token()}},
    }
    d.update(over)
    return d


def publish(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"recipients": [{"type": "channel", "channel": "news"}], "payload": {"title": "t"}}
    p.update(over)
    return p


async def raw_post(gw: Gateway, key: SockudoKey, suffix: str, body: bytes) -> httpx.Response:
    path = f"/apps/{key.app_id}/push{suffix}"
    q = signed_query(key, "POST", path, body)
    return await gw.client.post(
        f"{path}?{urlencode(q)}", content=body, headers={"Content-Type": "application/json"}
    )


async def test_device_registration_bad_input(env: tuple[Gateway, SockudoKey]) -> None:
    gw, key = env
    for bad in (
        device(push={"recipient": {"transportType": "carrier-pigeon", "registrationToken": "x"}}),
        device(push={"recipient": {"transportType": "gcm"}}),
        device(platform="amiga"),
        device(formFactor=7),
        device(id=None),
        device(id="x" * 41),
        device(timezone="Mars/Olympus"),
        device(metadata=["not", "an", "object"]),
        device(metadata={"big": "x" * 5000}),
        device(
            platform="ios", push={"recipient": {"transportType": "wns", "channelUri": "https://x.example/c"}}
        ),
        device(
            push={"recipient": {"transportType": "web", "endpoint": "not-a-url", "p256dh": "a", "auth": "b"}}
        ),
    ):
        shape(await call(gw.client, key, "POST", "/deviceRegistrations", bad), 400, "invalid_input")
    for raw in (b"{", b"[]", b'"x"', b"null"):
        shape(await raw_post(gw, key, "/deviceRegistrations", raw), 400, "invalid_input")
    # Nothing of it was stored.
    assert (await gw.client.get("/v1/devices")).json()["items"] == []
    # An unknown capability, and push-subscribe without a device token / on an admin route.
    shape(
        await call(
            gw.client,
            key,
            "POST",
            "/deviceRegistrations",
            device(),
            headers={"X-Sockudo-Push-Capability": "root"},
        ),
        403,
        "forbidden",
    )
    sub = {"X-Sockudo-Push-Capability": "push-subscribe"}
    shape(await call(gw.client, key, "POST", "/deviceRegistrations", device(), headers=sub), 403, "forbidden")
    shape(await call(gw.client, key, "GET", "/deviceRegistrations", headers=sub), 403, "forbidden")
    assert (await call(gw.client, key, "POST", "/deviceRegistrations", device())).status_code == 201
    shape(await call(gw.client, key, "GET", "/deviceRegistrations/dev-1", headers=sub), 401, "auth_failed")
    shape(await call(gw.client, key, "GET", "/deviceRegistrations/nope"), 404, "not_found")
    shape(
        await call(gw.client, key, "GET", "/deviceRegistrations", params={"limit": "0"}), 400, "invalid_input"
    )
    shape(
        await call(gw.client, key, "GET", "/deviceRegistrations", params={"limit": "x"}), 400, "invalid_input"
    )
    shape(
        await call(gw.client, key, "GET", "/deviceRegistrations", params={"cursor": "%%%"}),
        400,
        "invalid_input",
    )
    shape(await call(gw.client, key, "DELETE", "/deviceRegistrations"), 400, "invalid_input")


async def test_subscription_bad_input(env: tuple[Gateway, SockudoKey]) -> None:
    gw, key = env
    assert (await call(gw.client, key, "POST", "/deviceRegistrations", device())).status_code == 201
    shape(
        await call(gw.client, key, "POST", "/channelSubscriptions", {"deviceId": "dev-1"}),
        400,
        "invalid_input",
    )
    shape(
        await call(
            gw.client, key, "POST", "/channelSubscriptions", {"deviceId": "dev-1", "channel": "bad channel!"}
        ),
        400,
        "invalid_input",
    )
    shape(
        await call(gw.client, key, "POST", "/channelSubscriptions", {"deviceId": "ghost", "channel": "news"}),
        404,
        "not_found",
    )
    shape(
        await call(gw.client, key, "POST", "/channelSubscriptions", {"channel": "news"}), 400, "invalid_input"
    )
    # A client-scoped subscription (no deviceId) is a native user-channel binding; admin only.
    r = await call(gw.client, key, "POST", "/channelSubscriptions", {"clientId": "u1", "channel": "news"})
    assert r.status_code == 201 and r.json()["clientId"] == "u1" and r.json()["provider"] == "realtime", (
        r.text
    )
    bound = (await gw.client.get("/v1/user-channels", params={"users": "u1"})).json()["items"]
    assert [(b["user"], b["channel"]) for b in bound] == [("u1", "news")]
    sub = {"X-Sockudo-Push-Capability": "push-subscribe"}
    r = await call(
        gw.client, key, "POST", "/channelSubscriptions", {"clientId": "u2", "channel": "news"}, headers=sub
    )
    shape(r, 403, "forbidden")
    shape(await call(gw.client, key, "DELETE", "/channelSubscriptions"), 400, "invalid_input")
    assert (await gw.client.get("/v1/devices/dev-1")).json()["device"].get("channels") in (None, [])


async def test_publish_bad_input(env: tuple[Gateway, SockudoKey]) -> None:
    gw, key = env
    for bad in (
        publish(recipients=[]),
        publish(recipients=[{"type": "channel"}]),
        publish(recipients=[{"type": "martian", "x": 1}]),
        publish(recipients=[{"type": "channel", "channel": "news"}] * 1025),
        publish(payload={"title": 5}),
        publish(payload=None),
        publish(notBeforeMs=-5),
        publish(expiresAtMs="tomorrow"),
        publish(publishId="has spaces"),
        publish(recipients=[{"type": "indexedFilter", "filter": {"nonsense": True}}]),
        {"payload": {"title": "t"}},
    ):
        shape(await call(gw.client, key, "POST", "/publish", bad), 400, "invalid_input")
    for unsupported in (
        publish(recipients=[{"type": "registeredTopic", "topic": "t"}]),
        publish(recipients=[{"type": "providerTopic", "provider": "apns", "topic": "t"}]),
        publish(providerOverrides=[{"provider": "wns", "payload": {}}]),
    ):
        shape(await call(gw.client, key, "POST", "/publish", unsupported), 501, "not_implemented")
    shape(
        await call(gw.client, key, "POST", "/batch/publish", [publish(), publish(recipients=[])]),
        400,
        "invalid_input",
    )
    shape(await call(gw.client, key, "POST", "/batch/publish", []), 400, "invalid_input")
    shape(await raw_post(gw, key, "/publish", b"not json"), 400, "invalid_input")
    shape(await call(gw.client, key, "GET", "/publish/nope/status"), 404, "not_found")
    # Nothing was admitted (the batch is validated whole first).
    assert (await gw.client.get("/v1/publishes")).json()["items"] == []


async def test_dead_letter_times_that_are_not_ascii_milliseconds(env: tuple[Gateway, SockudoKey]) -> None:
    """``str.isdigit`` is true of ``²`` and of 5000 digits, which ``int``/``float`` refuse: a 400."""
    gw, key = env
    for bad in ("\u00b2", "\u0663", "9" * 5000, "1.5", "-1"):
        for name in ("sinceMs", "untilMs"):
            r = await call(gw.client, key, "GET", "/deadLetters", params={name: bad})
            shape(r, 400, "invalid_input")
    assert (await call(gw.client, key, "GET", "/deadLetters", params={"sinceMs": "0"})).status_code == 200


async def test_an_auth_key_with_nul_is_refused_not_a_500(env: tuple[Gateway, SockudoKey]) -> None:
    """The key is looked up before the NUL check of a genuine request: PostgreSQL refuses NUL."""
    gw, key = env
    q = {"auth_key": "ab\x00cd", "auth_timestamp": "1", "auth_version": "1.0", "auth_signature": "00"}
    r = await gw.client.get(f"/apps/{key.app_id}/push/deviceRegistrations?{urlencode(q)}")
    assert r.status_code in (400, 401), r.text
    assert set(r.json()) == {"error", "code", "status"}
