"""An spToken names its device whatever the device's id: a device a Sockudo client registered
with its own id (``d1``, not ``dev_…``) is the same device through Sentori (one registry)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.api import fcm_token
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.sockudo import call, new_key

from pushgate.api.compat.sentori.mapping import device_id_of, handle_of


@pytest.fixture
async def gw(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    lab.reset()
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as g:
        yield g


def test_handles_round_trip() -> None:
    for device_id in ("dev_0123abcd", "d1", "dev_", "dev_~x", "~a", "sdk-device-1", "ipt_x"):
        handle = handle_of(device_id)
        assert handle.startswith("ipt_") and device_id_of(handle) == device_id, (device_id, handle)
    assert handle_of("dev_0123abcd") == "ipt_0123abcd"  # the spTokens handed out so far


async def test_a_sockudo_device_through_sentori(gw: Gateway) -> None:
    key = await new_key(gw.client)
    token = fcm_token()
    d: dict[str, Any] = {"id": "d1", "platform": "android"}
    d["push"] = {"recipient": {"transportType": "gcm", "registrationToken": token}}
    assert (await call(gw.client, key, "POST", "/deviceRegistrations", d)).status_code == 201
    r = await gw.client.post("/v1/push/devices", json={"kind": "fcm", "nativeToken": token})
    assert r.status_code == 202, r.text
    sp = r.json()["spToken"]
    r = await gw.client.post(f"/v1/push/devices/{sp}/topics", json={"topic": "news"})
    assert r.status_code == 202, r.text
    assert (await gw.client.get("/v1/devices/d1")).json()["device"]["channels"] == ["news"]
    r = await gw.client.delete(f"/v1/push/devices/{sp}")
    assert r.status_code == 200 and r.json()["spToken"] == sp, r.text
    assert (await gw.client.get("/v1/devices/d1")).status_code == 404
