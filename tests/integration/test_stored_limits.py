"""Every string a tenant can store has a length limit, answered with a 400 that names the field
(issue 9, item 11). The limits that already held (tokens, users, channels, tags, locales,
idempotency keys) are covered by test_api_validation; these are the gaps that were closed."""

from __future__ import annotations

from typing import Any

import httpx
from support.api import register
from support.gateway import Gateway
from support.lab import Lab


def _refused(r: httpx.Response, *words: str) -> str:
    assert r.status_code == 400, r.text
    message = str(r.json()["error"]["message"])
    assert all(w in message for w in words), message
    return message


def _long_endpoint(lab: Lab, length: int) -> dict[str, Any]:
    sub = lab.subscription()
    base = "https://push.example.com/send/"
    return {**sub, "endpoint": base + "a" * (length - len(base))}


async def test_a_web_push_endpoint_over_2048_characters_is_refused(gateway: Gateway, lab: Lab) -> None:
    """A 100 KB endpoint used to be stored, and sent to, as it came."""
    c = gateway.client
    body = {"provider": "webpush", "platform": "web", "token": _long_endpoint(lab, 2049)}
    _refused(await c.post("/v1/devices", json=body), "token:", "2049 characters", "2048")
    assert (await c.get("/v1/devices")).json()["items"] == []
    body["token"] = _long_endpoint(lab, 2048)
    assert (await c.post("/v1/devices", json=body)).status_code == 200


async def test_a_raw_web_push_recipient_with_an_overlong_endpoint_is_refused(
    gateway: Gateway, lab: Lab
) -> None:
    recipient = {"type": "token", "provider": "webpush", "token": _long_endpoint(lab, 5000)}
    r = await gateway.client.post(
        "/v1/publish", json={"recipients": [recipient], "notification": {"title": "x"}}
    )
    _refused(r, "token:", "2048")


async def test_meta_names_are_limited(gateway: Gateway) -> None:
    c = gateway.client
    body = {"provider": "fcm", "platform": "android", "token": "fcm-meta-1", "meta": {"k" * 201: "v"}}
    _refused(await c.post("/v1/devices", json=body), "meta")
    body["meta"] = {"k" * 200: "v"}
    assert (await c.post("/v1/devices", json=body)).status_code == 200


async def test_a_device_id_longer_than_any_id_is_refused(gateway: Gateway) -> None:
    body = {"provider": "fcm", "platform": "android", "token": "fcm-id-1", "id": "dev_" + "x" * 61}
    _refused(await gateway.client.post("/v1/devices", json=body), "id")


async def test_bulk_filters_refuse_overlong_ids_and_users(gateway: Gateway) -> None:
    await register(gateway, provider="fcm", platform="android", token="fcm-filter-1", user="u")
    c = gateway.client
    _refused(await c.post("/v1/devices/remove", json={"ids": ["d" * 201]}), "ids")
    update = {"users": ["u" * 201], "meta_update": {"meta": {}}}
    _refused(await c.post("/v1/devices/update", json=update), "users")
