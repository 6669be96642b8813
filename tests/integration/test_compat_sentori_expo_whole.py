"""Sentori's Expo-compatible send is checked whole: a message refused by admission (as
``POST /v1/publish`` refuses it) refuses the request before any message of it is admitted, as
Expo's service validates the request before sending (no 400 with earlier messages sent)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from support.api import fcm_token
from support.gateway import Gateway

SEND = "/v1/push/expo-compat/send"


async def register_expo(gw: Gateway) -> str:
    expo = f"ExponentPushToken[{secrets.token_urlsafe(16)}]"
    r = await gw.client.post(
        "/v1/push/devices", json={"kind": "fcm", "nativeToken": fcm_token(), "expoPushToken": expo}
    )
    assert r.status_code == 202, r.text
    return expo


@pytest.mark.parametrize(
    "bad",
    [{"ttl": -5}, {"title": "x" * 20000}, {"expiration": 1}],
    ids=["ttl", "title", "expired"],
)
async def test_a_refused_message_admits_nothing(gateway: Gateway, bad: dict[str, Any]) -> None:
    expo = await register_expo(gateway)
    good = {"to": expo, "title": "first"}
    r = await gateway.client.post(SEND, json=[good, {"to": expo, "body": "second", **bad}])
    assert r.status_code == 400, r.text[:300]
    assert r.json()["errors"][0]["code"] == "VALIDATION_ERROR"
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []
