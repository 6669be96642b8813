"""Client tokens, device tokens and private channels (docs/clients.md) through the real API on
both databases: a device registers and manages itself without the app key, and its token opens
nothing else; forged, expired and foreign tokens are refused."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import socketio
from support.api import fcm_token, register
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab

from pushgate.api.client_auth import TokenRefused, authenticate_device_token


async def client_token(gw: Gateway, **body: Any) -> str:
    r = await gw.client.post("/v1/client-tokens", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["expires_at"].endswith("Z")
    return str(r.json()["token"])


def as_token(gw: Gateway, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    return str(r.json()["error"]["message"])


async def make_private(gw: Gateway, *channels: str) -> None:
    for channel in channels:
        r = await gw.client.put(f"/v1/channels/{channel}/private")
        assert r.status_code == 204, r.text


async def test_a_device_registers_updates_subscribes_and_deletes_itself(gateway: Gateway) -> None:
    await make_private(gateway, "vip", "staff")
    listed = await gateway.client.get("/v1/channels/private")
    assert [c["channel"] for c in listed.json()["items"]] == ["staff", "vip"]
    token = await client_token(gateway, user="u1", channels=["vip"], ttl_seconds=600)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["typ"] == "client" and claims["sub"] == "u1" and claims["channels"] == ["vip"]
    async with as_token(gateway, token) as client:
        body = {"provider": "fcm", "token": fcm_token(), "platform": "android"}
        assert "of user 'u1' only" in error(
            await client.post("/v1/devices", json={**body, "user": "u2"}), 403
        )
        assert "never by id" in error(await client.post("/v1/devices", json={**body, "id": "x"}), 403)
        refused = await client.post("/v1/devices", json={**body, "channels": ["news", "staff"]})
        assert "staff is private" in error(refused, 403)
        r = await client.post("/v1/devices", json={**body, "channels": ["news", "vip"]})
        assert r.status_code == 200, r.text
        # The client token registers devices and does nothing else.
        assert "may only register a device" in error(await client.get("/v1/devices"), 403)
    device, device_token = r.json()["device"], r.json()["device_token"]
    assert device["user"] == "u1" and device["channels"] == ["news", "vip"]
    claims = jwt.decode(device_token, options={"verify_signature": False})
    assert claims["typ"] == "device" and claims["sub"] == device["id"] and claims["channels"] == ["vip"]
    own = f"/v1/devices/{device['id']}"
    async with as_token(gateway, device_token) as me:
        r = await me.patch(own, json={"locale": "de-DE"})
        assert r.status_code == 200 and r.json()["device"]["locale"] == "de-DE", r.text
        assert (await me.get(own)).json()["device"]["locale"] == "de-DE"
        assert (await me.put(f"{own}/channels/sport")).status_code == 204  # public
        assert "staff is private" in error(await me.put(f"{own}/channels/staff"), 403)
        replace = await me.patch(own, json={"channels": ["sport", "staff"]})
        assert "staff is private" in error(replace, 403)
        assert (await me.delete(f"{own}/channels/vip")).status_code == 204  # leaving: always
        assert (await me.put(f"{own}/channels/vip")).status_code == 204  # named by the token
        assert "cannot change its device's user" in error(await me.patch(own, json={"user": "u2"}), 403)
        r = await me.get(own)
        assert sorted(r.json()["device"]["channels"]) == ["news", "sport", "vip"]
        assert r.json()["device"]["user"] == "u1"
        assert (await me.delete(own)).status_code == 204
        # Deleting the device ends its token at once.
        assert "device was deleted" in error(await me.get(own), 401)
    # The app key joins private channels without any claim.
    other = await register(gateway, provider="fcm", token=fcm_token(), platform="ios", channels=["staff"])
    assert other["channels"] == ["staff"]


async def test_a_device_token_opens_only_its_own_device(gateway: Gateway) -> None:
    mine = await gateway.client.post(
        "/v1/devices", json={"provider": "fcm", "token": fcm_token(), "platform": "android"}
    )
    assert mine.status_code == 200, mine.text  # an app-key registration gets a device token too
    me_id, token = mine.json()["device"]["id"], mine.json()["device_token"]
    theirs = await register(gateway, provider="fcm", token=fcm_token(), platform="android", user="u9")
    async with as_token(gateway, token) as me:
        answers = {
            "read": await me.get(f"/v1/devices/{theirs['id']}"),
            "patch": await me.patch(f"/v1/devices/{theirs['id']}", json={"locale": "fr"}),
            "delete": await me.delete(f"/v1/devices/{theirs['id']}"),
            "subscribe": await me.put(f"/v1/devices/{theirs['id']}/channels/news"),
            "missing": await me.get("/v1/devices/no-such-device"),
        }
        messages = {what: error(r, 403) for what, r in answers.items()}
        # Another device's id and an id that does not exist get the same answer: no oracle.
        assert len(set(messages.values())) == 1
        assert f"only on its own device ({me_id})" in messages["read"]
        for method, path, body in [
            ("GET", "/v1/devices", None),
            ("POST", "/v1/devices/search", {"filter": {"user": "u9"}}),
            ("POST", "/v1/publish", {"recipients": [{"type": "user", "user": "u9"}], "notification": {}}),
            ("POST", "/v1/client-tokens", {"user": "u9"}),
            ("POST", f"/v1/devices/{me_id}/token", {}),
            ("POST", "/v1/devices", {"provider": "fcm", "token": fcm_token(), "platform": "android"}),
            ("PUT", "/v1/channels/news/private", None),
            ("GET", "/v1/keys", None),
        ]:
            r = await me.request(method, path, json=body)
            assert "may only read, update and delete its own device" in error(r, 403), (method, path)
    # The app key still does everything, including minting a token for a device.
    assert (await gateway.client.get(f"/v1/devices/{theirs['id']}")).status_code == 200
    assert len((await gateway.client.get("/v1/devices")).json()["items"]) == 2
    r = await gateway.client.post(f"/v1/devices/{theirs['id']}/token", json={"channels": ["vip"]})
    assert r.status_code == 200, r.text
    async with as_token(gateway, r.json()["token"]) as them:
        r = await them.get(f"/v1/devices/{theirs['id']}")
        assert r.status_code == 200 and r.json()["device"]["user"] == "u9"
    assert "not found" in error(await gateway.client.post("/v1/devices/nope/token"), 404)
    # A client token without a user registers devices without one, and may not name one.
    async with as_token(gateway, await client_token(gateway)) as anonymous:
        body = {"provider": "fcm", "token": fcm_token(), "platform": "web"}
        refused = await anonymous.post("/v1/devices", json={**body, "user": "u9"})
        assert "devices of no user (an anonymous device) only" in error(refused, 403)
        r = await anonymous.post("/v1/devices", json=body)
        assert r.status_code == 200 and "user" not in r.json()["device"], r.text
    services = gateway.app.state.services
    assert (await authenticate_device_token(services, token))[1] == me_id
    with pytest.raises(TokenRefused, match="client token"):
        await authenticate_device_token(services, await client_token(gateway))


async def test_forged_expired_and_foreign_tokens_are_refused(gateway: Gateway) -> None:
    secret = (await gateway.client.get("/v1/realtime/secret")).json()["secret"]
    r = await gateway.client.post(
        "/v1/devices", json={"provider": "fcm", "token": fcm_token(), "platform": "android"}
    )
    device_id, token = r.json()["device"]["id"], r.json()["device_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    own = f"/v1/devices/{device_id}"
    expired = jwt.encode({**claims, "exp": int(time.time()) - 60}, secret, algorithm="HS256")
    forged = jwt.encode(claims, "not-the-secret-" * 3, algorithm="HS256")
    as_client = jwt.encode({**claims, "typ": "client"}, secret, algorithm="HS256")  # wrong aud
    connection = (await gateway.client.post("/v1/realtime/tokens", json={"user": device_id})).json()
    for bad, why in [
        (expired, "expired"),
        (forged, "Signature verification failed"),
        (as_client, "Audience doesn't match"),
        (connection["token"], "typ must be client or device"),
    ]:
        async with as_token(gateway, bad) as client:
            assert why in error(await client.get(own), 401)
    # App B's key sees none of app A's devices, and A's device token is A's only.
    b_app, b_key = await gateway.app.state.services.apps.create("tenant-b")
    async with gateway.as_app(b_key) as b:
        b_device = await register(b, provider="fcm", token=fcm_token(), platform="android")
        assert (await b.get(own)).status_code == 404
    async with as_token(gateway, token) as me:
        assert "only on its own device" in error(await me.get(f"/v1/devices/{b_device['id']}"), 403)
    claiming_b = jwt.encode({**claims, "iss": b_app.id, "sub": b_device["id"]}, secret, algorithm="HS256")
    async with as_token(gateway, claiming_b) as client:
        assert "Signature verification failed" in error(
            await client.get(f"/v1/devices/{b_device['id']}"), 401
        )
    # A device token is not a connection token: the socket.io gateway refuses it.
    sio = socketio.AsyncClient(reconnection=False)
    said: list[Any] = []
    sio.on("connect_error", said.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(gateway.url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    await sio.disconnect()
    assert "Invalid audience" in str(said), said


async def test_a_flood_of_forged_tokens_is_throttled_like_wrong_keys(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_AUTH_MAX_FAILURES="3")
    async with running_gateway(settings) as gw:
        r = await gw.client.post(
            "/v1/devices", json={"provider": "fcm", "token": fcm_token(), "platform": "ios"}
        )
        device_id, token = r.json()["device"]["id"], r.json()["device_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        secret = (await gw.client.get("/v1/realtime/secret")).json()["secret"]
        expired = jwt.encode({**claims, "exp": int(time.time()) - 60}, secret, algorithm="HS256")
        async with as_token(gw, expired) as client:
            # Expired tokens were genuine: they are refused but never block the address.
            assert [(await client.get(f"/v1/devices/{device_id}")).status_code for _ in range(5)] == [401] * 5
        forged = jwt.encode(claims, "a-guess-" * 4, algorithm="HS256")
        async with as_token(gw, forged) as client:
            statuses = [(await client.get(f"/v1/devices/{device_id}")).status_code for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        async with as_token(gw, token) as me:  # the right token from the blocked address: refused too
            r = await me.get(f"/v1/devices/{device_id}")
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_failures"


async def test_the_docs_example_runs(gateway: Gateway) -> None:
    text = (Path(__file__).parents[2] / "docs" / "clients.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", text, re.S)
    scope: dict[str, Any] = {}
    exec(compile(example, "docs/clients.md", "exec"), scope)
    device = await scope["main"](gateway.url, gateway.key)
    assert device["user"] == "alice" and device["locale"] == "de-DE"
    assert sorted(device["channels"]) == ["news", "team-42"]
    assert (await gateway.client.get(f"/v1/devices/{device['id']}")).status_code == 404  # it left


async def test_a_device_over_the_request_rate_gets_429_and_others_go_on(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_AUTH_KEY_REQUESTS_PER_SECOND="2")
    async with running_gateway(settings) as gw:
        r = await gw.client.post(
            "/v1/devices", json={"provider": "fcm", "token": fcm_token(), "platform": "ios"}
        )
        device_id, token = r.json()["device"]["id"], r.json()["device_token"]
        async with as_token(gw, token) as me:
            answers = [await me.get(f"/v1/devices/{device_id}") for _ in range(10)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and limited[0].json()["error"]["code"] == "rate_limited"
        assert (
            "this device token is limited to 2 requests per second" in limited[0].json()["error"]["message"]
        )
        assert (await gw.client.get(f"/v1/devices/{device_id}")).status_code == 200  # the key's own bucket


async def test_an_anonymous_client_token_cannot_take_over_a_users_device(gateway: Gateway) -> None:
    push = fcm_token()
    alices = await register(
        gateway, provider="fcm", token=push, platform="android", user="alice", meta={"k": "v"}
    )
    body = {"provider": "fcm", "token": push, "platform": "android"}
    async with as_token(gateway, await client_token(gateway)) as anonymous:
        refused = await anonymous.post("/v1/devices", json={**body, "meta": {"k": "taken"}})
        message = error(refused, 403)
        assert "belongs to a user" in message and alices["id"] not in message
        # An anonymous device's push token: the anonymous client token re-registers it (updates it).
        lone = {"provider": "fcm", "token": fcm_token(), "platform": "android"}
        first = await anonymous.post("/v1/devices", json=lone)
        again = await anonymous.post("/v1/devices", json={**lone, "locale": "fr-FR"})
        assert first.status_code == again.status_code == 200, again.text
        assert again.json()["device"]["id"] == first.json()["device"]["id"]
        assert again.json()["device"]["locale"] == "fr-FR"
    device = (await gateway.client.get(f"/v1/devices/{alices['id']}")).json()["device"]
    assert device["user"] == "alice" and device["meta"] == {"k": "v"}  # untouched
    # A client token with a user still adopts a registered push token (the push token is the proof).
    async with as_token(gateway, await client_token(gateway, user="bob")) as bobs:
        r = await bobs.post("/v1/devices", json=body)
        assert r.status_code == 200 and r.json()["device"] | {"user": "bob"} == r.json()["device"], r.text
        assert r.json()["device"]["id"] == alices["id"]


async def test_a_device_tokens_409_does_not_name_the_other_device(gateway: Gateway) -> None:
    theirs_push = fcm_token()
    theirs = await register(gateway, provider="fcm", token=theirs_push, platform="android", user="u9")
    r = await gateway.client.post(
        "/v1/devices", json={"provider": "fcm", "token": fcm_token(), "platform": "android"}
    )
    mine, token = r.json()["device"]["id"], r.json()["device_token"]
    async with as_token(gateway, token) as me:
        message = error(await me.patch(f"/v1/devices/{mine}", json={"token": theirs_push}), 409)
    assert "already registered as another device" in message and theirs["id"] not in message
    # The app key is told which device holds it.
    r = await gateway.client.patch(f"/v1/devices/{mine}", json={"token": theirs_push})
    assert theirs["id"] in error(r, 409)
