"""The Sockudo push API front-end (``/apps/{appId}/push``): signing (issue 14, acceptance 3),
the seed document's examples replayed, and devices shared with the native registry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from support.api import fcm_token
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.process import PUSHGATE
from support.sockudo import SockudoKey, call, hmac_signature, new_key, signed_query
from support.wait import wait_for


@pytest.fixture
async def sgw(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    lab.reset()
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as gw:
        yield gw


def assert_sockudo_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert set(body) == {"error", "code", "status"}
    assert body["code"] == "auth_failed" and body["status"] == 401 and body["error"]


async def test_signing_keys_admin_routes(sgw: Gateway) -> None:
    key = await new_key(sgw.client)
    listed = (await sgw.client.get("/v1/compat/sockudo/keys")).json()["items"]
    assert [k["auth_key"] for k in listed] == [key.key]
    assert key.secret not in json.dumps(listed)
    r = await sgw.client.post(f"/v1/compat/sockudo/keys/{key.key}/rotate")
    assert r.status_code == 200 and r.json()["secret"] != key.secret
    rotated = SockudoKey(key.app_id, key.key, r.json()["secret"])
    assert_sockudo_401(await call(sgw.client, key, "GET", "/deviceRegistrations"))
    assert (await call(sgw.client, rotated, "GET", "/deviceRegistrations")).status_code == 200
    assert (await sgw.client.delete(f"/v1/compat/sockudo/keys/{key.key}")).status_code == 204
    assert_sockudo_401(await call(sgw.client, rotated, "GET", "/deviceRegistrations"))
    assert (await sgw.client.delete(f"/v1/compat/sockudo/keys/{key.key}")).status_code == 404
    assert (await sgw.client.post("/v1/compat/sockudo/keys/a%00b/rotate")).status_code in (400, 404)
    assert (await sgw.client.delete("/v1/compat/sockudo/keys/" + "x" * 300)).status_code in (400, 404)
    # A key without the admin scope cannot see or make signing keys.
    r = await sgw.client.post("/v1/keys", json={"name": "pub", "scopes": ["publish", "read"]})
    async with sgw.as_app(r.json()["secret"]) as c:
        assert (await c.get("/v1/compat/sockudo/keys")).status_code == 403


async def test_without_master_key_creation_is_409(gateway: Gateway) -> None:
    r = await gateway.client.post("/v1/compat/sockudo/keys")
    assert r.status_code == 409 and "PUSHGATE_SECRET_KEY" in r.json()["error"]["message"]


async def test_signature_checks(sgw: Gateway) -> None:
    """Acceptance 3: a correct signature passes; every way of getting it wrong is a 401."""
    key = await new_key(sgw.client)
    c = sgw.client
    base = f"/apps/{key.app_id}/push"
    device: dict[str, Any] = {
        "id": "dev-sig",
        "platform": "android",
        "formFactor": "phone",
        "timezone": "UTC",
        "locale": "en",
    }
    device["push"] = {"recipient": {"transportType": "gcm", "registrationToken": fcm_token()}}
    body = json.dumps(device).encode()
    hdr = {"Content-Type": "application/json"}

    async def post(query: dict[str, str], content: bytes = body) -> httpx.Response:
        return await c.post(f"{base}/deviceRegistrations?{urlencode(query)}", content=content, headers=hdr)

    good = signed_query(key, "POST", f"{base}/deviceRegistrations", body)
    assert (await post(good)).status_code == 201
    # A wrong signature.
    assert_sockudo_401(await post({**good, "auth_signature": "0" * 64}))
    # A stale timestamp (601 s ago), correctly signed.
    assert_sockudo_401(
        await post(
            signed_query(key, "POST", f"{base}/deviceRegistrations", body, timestamp=int(time.time()) - 601)
        )
    )
    # A missing body_md5 (signed without it) and a wrong one (signed with it).
    q = {"auth_key": key.key, "auth_timestamp": str(int(time.time())), "auth_version": "1.0"}
    assert_sockudo_401(
        await post(
            {**q, "auth_signature": hmac_signature(key.secret, "POST", f"{base}/deviceRegistrations", q)}
        )
    )
    wrong = {**q, "body_md5": hashlib.md5(b"other").hexdigest()}
    assert_sockudo_401(
        await post(
            {
                **wrong,
                "auth_signature": hmac_signature(key.secret, "POST", f"{base}/deviceRegistrations", wrong),
            }
        )
    )
    # body_md5 on a GET is refused even when signed.
    g = {**q, "body_md5": hashlib.md5(b"").hexdigest()}
    g["auth_signature"] = hmac_signature(key.secret, "GET", f"{base}/deviceRegistrations", g)
    assert_sockudo_401(await c.get(f"{base}/deviceRegistrations?{urlencode(g)}"))
    # A query parameter changed after signing.
    listed = signed_query(key, "GET", f"{base}/deviceRegistrations", params={"limit": "10"})
    assert (await c.get(f"{base}/deviceRegistrations?{urlencode(listed)}")).status_code == 200
    assert_sockudo_401(await c.get(f"{base}/deviceRegistrations?{urlencode({**listed, 'limit': '11'})}"))
    # The body changed after signing.
    assert_sockudo_401(await post(good, body.replace(b"dev-sig", b"dev-sih")))
    # The appId of another app (with its own key: the key names the app, the path must match).
    other, other_key = await sgw.app.state.services.apps.create("other")
    async with sgw.as_app(other_key) as oc:
        okey = await new_key(oc)
    assert okey.app_id == other.id
    assert_sockudo_401(
        await call(c, SockudoKey(other.id, key.key, key.secret), "GET", "/deviceRegistrations")
    )
    # Unsigned and unknown-key requests.
    assert_sockudo_401(await c.get(f"{base}/deviceRegistrations"))
    assert_sockudo_401(
        await call(c, SockudoKey(key.app_id, "nope", key.secret), "GET", "/deviceRegistrations")
    )
    # The app's name works as its appId too.
    assert (
        await call(c, SockudoKey("default", key.key, key.secret), "GET", "/deviceRegistrations")
    ).status_code == 200


async def test_device_registration_shared_with_native_and_publish_arrives(sgw: Gateway, lab: Lab) -> None:
    key = await new_key(sgw.client)
    c = sgw.client
    token = fcm_token()
    details = {
        "appId": "ignored",
        "id": "android-device-1",
        "clientId": "user-42",
        "formFactor": "phone",
        "platform": "android",
        "metadata": {"model": "pixel", "year": 2024},
        "deviceSecret": "ignored",
        "timezone": "Europe/Berlin",
        "locale": "de-DE",
        "push": {"state": "ACTIVE", "recipient": {"transportType": "gcm", "registrationToken": token}},
    }
    r = await call(c, key, "POST", "/deviceRegistrations", details)
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["change"] == "inserted" and reg["deviceIdentityToken"]
    dev = reg["device"]
    assert dev["id"] == "android-device-1" and dev["clientId"] == "user-42" and dev["appId"] == key.app_id
    assert dev["recipient"]["transportType"] == "gcm" and dev["recipient"]["provider"] == "fcm"
    assert dev["recipient"]["tokenHash"] == reg["tokenHash"] and token not in r.text
    # Re-registering: no new token unless asked for.
    again = await call(c, key, "POST", "/deviceRegistrations", details)
    assert again.json()["change"] == "updated" and "deviceIdentityToken" not in again.json()
    rotated = await call(
        c,
        key,
        "POST",
        "/deviceRegistrations",
        details,
        headers={"X-Sockudo-Rotate-Device-Identity-Token": "true"},
    )
    assert rotated.json()["deviceIdentityToken"]
    # Subscribe to a channel; visible natively with the same channels.
    sub = {"channel": "orders", "deviceId": "android-device-1", "provider": "fcm", "tokenHash": "x"}
    r = await call(c, key, "POST", "/channelSubscriptions", sub)
    assert r.status_code == 201, r.text
    assert r.json()["channel"] == "orders" and r.json()["tokenHash"] == reg["tokenHash"]
    native = (await c.get("/v1/devices/android-device-1")).json()["device"]
    assert native["user"] == "user-42" and native["channels"] == ["orders"] and native["provider"] == "fcm"
    # Publish to the channel: the notification arrives at the lab.
    r = await call(
        c,
        key,
        "POST",
        "/publish",
        {
            "publishId": "order-1-packed",
            "recipients": [{"type": "channel", "channel": "orders"}],
            "payload": {"title": "Order updated", "body": "packed", "templateData": {"order_id": "ord_1"}},
        },
        params={"mode": "sync"},
    )
    assert r.status_code == 202, r.text
    assert r.headers["X-Sockudo-Forced-Async"] == "publish-api-is-async"
    assert r.json()["publishId"] == "order-1-packed" and r.json()["status"] == "accepted"
    await wait_for(lambda: _ledger(lab, token), 30, "the publish at the lab")
    sent = lab.ledger("fcm", token)["items"][0]
    assert "Order updated" in json.dumps(sent)

    async def done() -> dict[str, Any] | None:
        s = (await call(c, key, "GET", "/publish/order-1-packed/status")).json()
        return s if s["state"] == "succeeded" else None

    status = await wait_for(done, 30, "the publish status")
    assert status["counters"]["succeeded"] == 1 and status["counters"]["planned"] == 1
    # The same publishId again: the same publish, not a second send.
    dup = await call(
        c,
        key,
        "POST",
        "/publish",
        {
            "publishId": "order-1-packed",
            "recipients": [{"type": "channel", "channel": "orders"}],
            "payload": {"title": "Order updated", "body": "packed", "templateData": {"order_id": "ord_1"}},
        },
    )
    assert dup.status_code == 202 and dup.json()["status"] == "succeeded"
    assert "X-Sockudo-Forced-Async" not in dup.headers


async def _ledger(lab: Lab, token: str) -> int | None:
    return lab.ledger("fcm", token)["total"] or None


async def test_cli_creates_a_signing_key(sgw: Gateway) -> None:
    env = {**os.environ, "PUSHGATE_DATABASE_URL": sgw.settings.database_url, "PUSHGATE_SECRET_KEY": MASTER}
    env.pop("PUSHGATE_CONFIG", None)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PUSHGATE, "apps", "sockudo-key", *args],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=60,
        )

    done = await asyncio.to_thread(run, "default")
    assert done.returncode == 0, done.stderr
    found = dict(re.findall(r"^(app_id|key|secret):\s+(\S+)", done.stdout, re.M))
    key = SockudoKey(found["app_id"], found["key"], found["secret"])
    assert (await call(sgw.client, key, "GET", "/deviceRegistrations")).status_code == 200
    missing = await asyncio.to_thread(run, "no-such-app")
    assert missing.returncode == 1 and "no app named" in missing.stderr
    env.pop("PUSHGATE_SECRET_KEY")
    no_master = await asyncio.to_thread(run, "default")
    assert no_master.returncode == 2 and "secret_key" in no_master.stderr


async def test_a_native_device_is_seen_through_sockudo(sgw: Gateway) -> None:
    key = await new_key(sgw.client)
    r = await sgw.client.post(
        "/v1/devices",
        json={
            "provider": "fcm",
            "token": fcm_token(),
            "platform": "android",
            "user": "u9",
            "channels": ["a", "b"],
        },
    )
    native = r.json()["device"]
    got = await call(sgw.client, key, "GET", f"/deviceRegistrations/{native['id']}")
    assert got.status_code == 200 and got.json()["clientId"] == "u9" and got.json()["platform"] == "android"
    subs = await call(sgw.client, key, "GET", "/channelSubscriptions", params={"deviceId": native["id"]})
    assert [s["channel"] for s in subs.json()["items"]] == ["a", "b"]
    chans = await call(sgw.client, key, "GET", "/channelSubscriptions/channels")
    assert chans.json()["items"] == ["a", "b"] and chans.json()["has_more"] is False
    r = await call(sgw.client, key, "DELETE", "/channelSubscriptions", params={"channel": "a"})
    assert r.json() == {"deleted": 1}
    assert (await sgw.client.get(f"/v1/devices/{native['id']}")).json()["device"]["channels"] == ["b"]
    r = await call(sgw.client, key, "DELETE", "/deviceRegistrations", params={"clientId": "u9"})
    assert r.json()["deleted"] == 1
    assert (await sgw.client.get(f"/v1/devices/{native['id']}")).status_code == 404


async def test_under_a_prefix_the_prefixed_path_is_signed(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(
        database_url, lab, PUSHGATE_SECRET_KEY=MASTER, PUSHGATE_COMPAT_SOCKUDO_PREFIX="/sockudo"
    )
    async with running_gateway(settings) as gw:
        key = await new_key(gw.client)
        path = f"/sockudo/apps/{key.app_id}/push/deviceRegistrations"
        r = await gw.client.get(f"{path}?{urlencode(signed_query(key, 'GET', path))}")
        assert r.status_code == 200 and r.json()["items"] == [], r.text
        unprefixed = f"/apps/{key.app_id}/push/deviceRegistrations"
        r = await gw.client.get(f"{path}?{urlencode(signed_query(key, 'GET', unprefixed))}")
        assert_sockudo_401(r)
        assert (await call(gw.client, key, "GET", "/deviceRegistrations")).status_code == 404
