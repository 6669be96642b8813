"""Sockudo front-end: a device identity token (push-subscribe) does only what the native device
token may do on ``/v1`` (docs/clients.md): not change its device's user, not join a private
channel, not learn another device's id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.api import fcm_token
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.sockudo import SockudoKey, call, new_key


@pytest.fixture
async def env(database_url: str, lab: Lab) -> AsyncIterator[tuple[Gateway, SockudoKey]]:
    lab.reset()
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as gw:
        yield gw, await new_key(gw.client)


def device(device_id: str, token: str, **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": device_id,
        "platform": "android",
        "clientId": "alice",
        "push": {"recipient": {"transportType": "gcm", "registrationToken": token}},
    }
    d.update(over)
    return d


def as_device(identity: str) -> dict[str, str]:
    return {"X-Sockudo-Push-Capability": "push-subscribe", "X-Sockudo-Device-Identity-Token": identity}


def refused(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"


async def test_identity_token_cannot_change_its_devices_user(env: tuple[Gateway, SockudoKey]) -> None:
    gw, key = env
    token = fcm_token()
    r = await call(gw.client, key, "POST", "/deviceRegistrations", device("d1", token))
    assert r.status_code == 201, r.text
    mine = as_device(r.json()["deviceIdentityToken"])
    r = await call(
        gw.client, key, "POST", "/deviceRegistrations", device("d1", token, clientId="bob"), headers=mine
    )
    refused(r)
    assert (await gw.client.get("/v1/devices/d1")).json()["device"]["user"] == "alice"
    # The same user (or none given) is an ordinary update.
    r = await call(
        gw.client, key, "POST", "/deviceRegistrations", device("d1", token, locale="fr"), headers=mine
    )
    assert r.status_code == 201, r.text
    r = await call(
        gw.client, key, "POST", "/deviceRegistrations", device("d1", token, clientId=None), headers=mine
    )
    assert r.status_code == 201, r.text
    assert (await gw.client.get("/v1/devices/d1")).json()["device"]["user"] == "alice"


async def test_identity_token_cannot_join_a_private_channel(env: tuple[Gateway, SockudoKey]) -> None:
    gw, key = env
    r = await call(gw.client, key, "POST", "/deviceRegistrations", device("d1", fcm_token()))
    mine = as_device(r.json()["deviceIdentityToken"])
    assert (await gw.client.put("/v1/channels/staff/private")).status_code == 204
    sub = {"channel": "staff", "deviceId": "d1"}
    refused(await call(gw.client, key, "POST", "/channelSubscriptions", sub, headers=mine))
    assert (await gw.client.get("/v1/devices/d1")).json()["device"].get("channels") in (None, [])
    ok = await call(
        gw.client, key, "POST", "/channelSubscriptions", {"channel": "news", "deviceId": "d1"}, headers=mine
    )
    assert ok.status_code == 201, ok.text
    # The app (push-admin) may put it in the private channel.
    assert (await call(gw.client, key, "POST", "/channelSubscriptions", sub)).status_code == 201


async def test_identity_token_conflict_does_not_name_the_other_device(
    env: tuple[Gateway, SockudoKey],
) -> None:
    gw, key = env
    theirs = fcm_token()
    assert (
        await call(gw.client, key, "POST", "/deviceRegistrations", device("secret-id", theirs))
    ).status_code == 201
    r = await call(gw.client, key, "POST", "/deviceRegistrations", device("d1", fcm_token()))
    mine = as_device(r.json()["deviceIdentityToken"])
    r = await call(gw.client, key, "POST", "/deviceRegistrations", device("d1", theirs), headers=mine)
    assert r.status_code == 409, r.text
    assert "secret-id" not in r.text
