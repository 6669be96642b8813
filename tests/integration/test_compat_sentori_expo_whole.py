"""Sentori's Expo-compatible send is checked whole: a message refused by admission (as
``POST /v1/publish`` refuses it) refuses the request before any message of it is admitted, as
Expo's service validates the request before sending (no 400 with earlier messages sent)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from support.api import fcm_token
from support.gateway import Gateway
from support.lab import Lab

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
    [{"ttl": -5}, {"title": "x" * 20000}, {"expiration": 1}, {"sound": {"volume": 5}}],
    ids=["ttl", "title", "expired", "sound"],
)
async def test_a_refused_message_admits_nothing(gateway: Gateway, bad: dict[str, Any]) -> None:
    expo = await register_expo(gateway)
    good = {"to": expo, "title": "first"}
    r = await gateway.client.post(SEND, json=[good, {"to": expo, "body": "second", **bad}])
    assert r.status_code == 400, r.text[:300]
    assert r.json()["errors"][0]["code"] == "VALIDATION_ERROR"
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []


async def test_a_sound_object_reaches_apns(gateway: Gateway, lab: Lab) -> None:
    """Expo's ``sound`` object (an iOS critical alert) is APNs' ``aps.sound``, not dropped."""
    expo, token = f"ExponentPushToken[{secrets.token_urlsafe(16)}]", secrets.token_hex(32)
    r = await gateway.client.post(
        "/v1/push/devices", json={"kind": "apns", "nativeToken": token, "expoPushToken": expo}
    )
    assert r.status_code == 202, r.text
    sound = {"critical": True, "name": "alarm.caf", "volume": 0.5}
    r = await gateway.client.post(SEND, json={"to": expo, "title": "Fire", "sound": sound})
    assert r.status_code == 200 and r.json()["data"][0]["status"] == "ok", r.text
    await gateway.wait_done(r.json()["data"][0]["id"].split(".")[0])
    [got] = [i for i in lab.ledger("apns")["items"] if i["token"] == token]
    assert got["payload"]["aps"]["sound"] == {"critical": 1, "name": "alarm.caf", "volume": 0.5}
