"""The Sentori front-end (docs/compat.md, "Sentori"): every request example of the two Sentori
seed documents replayed as written (host, key and tokens substituted), against both databases
and the provider lab; registrations seen through the native API; acks on native records."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from support.api import fcm_token
from support.gateway import Gateway
from support.lab import Lab

from pushgate.store.schema import publish_stats

IPT_PREFIX = "ipt_"


async def register(gw: Gateway, path: str = "/v1/push/tokens", **body: Any) -> dict[str, Any]:
    body.setdefault("kind", "fcm")
    body.setdefault("nativeToken", fcm_token())
    r = await gw.client.post(path, json=body)
    assert r.status_code == 202, r.text
    out = dict(r.json())
    out["nativeToken"] = body["nativeToken"]
    return out


async def send(gw: Gateway, path: str = "/v1/push/send", **body: Any) -> dict[str, Any]:
    r = await gw.client.post(path, json=body)
    assert r.status_code == 202, r.text
    return dict(r.json())


async def delivered_counter(gw: Gateway, publish_id: str) -> int:
    """The publish's native ``delivered`` receipt counter (``publish_stats``), read from the store."""
    async with gw.app.state.services.db.read() as conn:
        q = sa.select(sa.func.sum(publish_stats.c.delivered)).where(publish_stats.c.publish_id == publish_id)
        return int((await conn.execute(q)).scalar() or 0)


def fcm_sent_to(lab: Lab, token: str) -> list[dict[str, Any]]:
    return [i["message"] for i in lab.ledger("fcm")["items"] if i["message"].get("token") == token]


async def test_overview_register_send_receipt(gateway: Gateway, lab: Lab) -> None:
    """The overview's path: register (``/v1/push/tokens``, an ``ipt_`` handle back), send with
    ``fetch(`${INGEST_URL}/v1/push/send`, {to: handle, title, body, data})``, the send's state
    and its receipt; the device is the native API's, and an installId re-registered with a new
    token stays the same device."""
    install = "install-" + secrets.token_hex(4)
    first = await register(gateway, installId=install, userKey="user-1", traits={"plan": "pro"})
    handle = first["spToken"]
    assert handle.startswith(IPT_PREFIX) and first["is_new"] is True
    native = (await gateway.client.get(f"/v1/devices/dev_{handle[4:]}", params={"include": "tags"})).json()
    assert native["device"]["user"] == "user-1" and native["device"]["provider"] == "fcm"
    assert native["device"]["tags"] == {"plan": "pro", "sentori_install": install}

    again = await register(gateway, installId=install, userKey="user-1")
    assert again["spToken"] == handle and again["is_new"] is False
    device = (await gateway.client.get(f"/v1/devices/dev_{handle[4:]}", params={"include": "tags"})).json()
    assert device["device"]["token"] == again["nativeToken"]
    assert device["device"]["tags"]["plan"] == "pro"  # traits kept when not given again

    out = await send(gateway, to=handle, title="Hello", body="World", data={"orderId": 42, "k": "v"})
    assert out["queued"] == 1 and out["capped"] is False and len(out["send_ids"]) == 1
    done = await gateway.wait_done(out["sendId"])
    assert done["counts"]["sent"] == 1
    [message] = fcm_sent_to(lab, again["nativeToken"])
    assert message["notification"] == {"title": "Hello", "body": "World"}
    assert message["data"]["orderId"] == "42" and message["data"]["k"] == "v"
    assert fcm_sent_to(lab, first["nativeToken"]) == []

    state = (await gateway.client.get(f"/v1/push/sends/{out['sendId']}")).json()
    assert state["state"] == "done" and state["counts"]["sent"] == 1 and state["counts"]["total"] == 1
    receipt = (await gateway.client.get(f"/v1/push/receipts/{out['send_ids'][0]}")).json()
    assert receipt["status"] == "sent" and receipt["provider"] == "fcm" and receipt["acked_at"] is None
    listed = (await gateway.client.get(f"/v1/push/sends/{out['sendId']}/deliveries")).json()
    assert [d["spToken"] for d in listed["deliveries"]] == [handle]


async def test_advanced_campaign_media_actions_levels(gateway: Gateway, lab: Lab) -> None:
    """The advanced recipe's tag, rich-media, actions and interruption-level examples."""
    dev = await register(gateway)
    ipt = dev["spToken"]
    tags = await send(
        gateway,
        to=ipt,
        title="Black Friday deal",
        body="30% off until midnight",
        campaignId="blackfriday-2026",
        templateId="deal-30pct",
        audienceTag="subscribers-us",
    )
    native = await gateway.wait_done(tags["sendId"])
    assert native["campaign"] == "blackfriday-2026"
    assert native["labels"] == {"templateId": "deal-30pct", "audienceTag": "subscribers-us"}
    shown = (await gateway.client.get(f"/v1/push/sends/{tags['sendId']}")).json()
    assert shown["campaignId"] == "blackfriday-2026" and shown["audienceTag"] == "subscribers-us"

    media = await send(
        gateway,
        to=ipt,
        title="Your order shipped",
        body="Track it →",
        options={"richMedia": {"imageUrl": "https://cdn.example.com/products/42.jpg"}},
    )
    actions = await send(
        gateway,
        to=ipt,
        title="Alex replied",
        body="Hey, do you have a minute?",
        options={
            "actions": [
                {"id": "REPLY", "title": "Reply", "isTextInput": True},
                {"id": "DISMISS", "title": "Dismiss"},
            ],
            "interruptionLevel": "timeSensitive",
            "threadIdentifier": "chat-1",
            "channelImportance": "high",
        },
    )
    for out in (media, actions):
        assert (await gateway.wait_done(out["sendId"]))["counts"]["sent"] == 1
    sent = fcm_sent_to(lab, dev["nativeToken"])
    titles = {m["notification"]["title"]: m for m in sent}
    assert titles["Your order shipped"]["notification"]["image"] == "https://cdn.example.com/products/42.jpg"
    assert "Alex replied" in titles and len(sent) == 3


async def test_advanced_topics_users_schedule(gateway: Gateway, lab: Lab) -> None:
    """Topic subscribe/unsubscribe/send, user targeting by fingerprint, scheduled sends."""
    fp = secrets.token_hex(32)
    dev = await register(gateway, userKey=fp)
    ipt = dev["spToken"]
    r = await gateway.client.post(f"/v1/push/tokens/{ipt}/topics", json={"topic": "breaking-news"})
    assert r.status_code == 202 and r.json() == {"status": "subscribed", "topic": "breaking-news"}
    native = (await gateway.client.get(f"/v1/devices/dev_{ipt[4:]}", params={"include": "channels"})).json()
    assert native["device"]["channels"] == ["breaking-news"]
    out = await send(
        gateway, to={"topic": "breaking-news"}, title="Market open", body="Pre-market futures up 1.2%"
    )
    assert (await gateway.wait_done(out["sendId"]))["counts"]["sent"] == 1

    for _ in range(2):  # idempotent
        r = await gateway.client.delete(f"/v1/push/tokens/{ipt}/topics/breaking-news")
        assert r.status_code == 202 and r.json()["status"] == "unsubscribed"
    empty = await send(gateway, to={"topic": "breaking-news"}, title="Market open", body="again")
    assert empty["tickets"] == [] and empty["queued"] == 0

    user = await send(
        gateway, to={"userFingerprintHex": fp}, title="Account update", body="Your new password is active"
    )
    assert (await gateway.wait_done(user["sendId"]))["counts"]["sent"] == 1
    bad = await gateway.client.post("/v1/push/send", json={"to": {"userFingerprintHex": "xyz"}, "title": "t"})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_target"
    messages = [m["notification"]["title"] for m in fcm_sent_to(lab, dev["nativeToken"])]
    assert sorted(messages) == ["Account update", "Market open"]

    later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    held = await send(gateway, to=ipt, title="Daily digest", body="Your stats are ready", sendAt=later)
    state = (await gateway.client.get(f"/v1/push/sends/{held['sendId']}")).json()
    assert (
        state["scheduled"] is True
        and state["state"] == "in_flight"
        and state["sendAt"].startswith(later[:16])
    )
    past = await send(gateway, to=ipt, title="Daily digest", body="now", sendAt="2026-06-11T08:00:00Z")
    assert (await gateway.wait_done(past["sendId"]))["counts"]["sent"] == 1


async def test_preferences_and_ack(gateway: Gateway, lab: Lab) -> None:
    """The preference center example (opt out, read back, a send skips the user with
    ``PreferenceOptedOut``) and the delivery ack, recorded on the native delivery record."""
    fp = secrets.token_hex(32)
    dev = await register(gateway, userKey=fp)
    r = await gateway.client.put(f"/v1/push/users/{fp}/preferences/marketing", json={"optedOut": True})
    assert r.status_code == 202, r.text
    r = await gateway.client.get(f"/v1/push/users/{fp}/preferences")
    assert r.json() == {"preferences": [{"category": "marketing", "optedOut": True}]}
    native = (await gateway.client.get(f"/v1/users/{fp}/preferences")).json()
    assert native["categories"]["marketing"] is False

    out = await send(
        gateway,
        to=dev["spToken"],
        title="Black Friday deal",
        body="30% off until midnight",
        preferenceCategory="marketing",
    )
    assert [(t["status"], t["providerOutcome"]) for t in out["tickets"]] == [("failed", "PreferenceOptedOut")]
    await gateway.wait_done(out["sendId"])
    assert fcm_sent_to(lab, dev["nativeToken"]) == []

    r = await gateway.client.put(f"/v1/push/users/{fp}/preferences/marketing", json={"optedOut": False})
    assert r.status_code == 202
    ok = await send(gateway, to=dev["spToken"], title="Deal", body="again", preferenceCategory="marketing")
    assert (await gateway.wait_done(ok["sendId"]))["counts"]["sent"] == 1

    # The SDK's ack: POST /v1/push/sends/<msgId>/ack (a one-device send), then by delivery id.
    r = await gateway.client.post(f"/v1/push/sends/{ok['sendId']}/ack", json={"ackSessionId": "s-1"})
    assert r.status_code == 202 and r.json() == {"status": "acked"}
    delivery = (await gateway.client.get(f"/v1/push/deliveries/{ok['send_ids'][0]}")).json()
    assert delivery["deliveredAt"] is not None and delivery["status"] == "sent"
    r = await gateway.client.post(f"/v1/push/deliveries/{ok['send_ids'][0]}/ack")
    assert r.status_code == 202  # a second ack changes nothing and is no error
    again = (await gateway.client.get(f"/v1/push/deliveries/{ok['send_ids'][0]}")).json()
    assert again["deliveredAt"] == delivery["deliveredAt"]
    assert await delivered_counter(gateway, ok["sendId"]) == 1  # counted once, natively
    shown = (await gateway.client.get(f"/v1/push/sends/{ok['sendId']}")).json()
    assert shown["counts"]["delivered"] == 1 and shown["counts"]["sent"] == 1
    r = await gateway.client.post(f"/v1/push/deliveries/{ok['sendId']}.dev_nope/ack")
    assert r.status_code == 404 and r.json()["error"] == "delivery_not_found"


async def test_current_code_shapes(gateway: Gateway, lab: Lab) -> None:
    """Sentori's renamed routes: ``/v1/push/devices`` (env, metadata, traits), ``/v1/push/sends``
    with ``spTokens``/``nativeTokens``/``payload``, revoke, and the audience count."""
    web = lab.subscription()
    dev = await register(
        gateway,
        "/v1/push/devices",
        kind="webpush",
        nativeToken=json.dumps(web),  # Sentori sends the subscription as its JSON text
        env="production",
        metadata={"model": "Pixel"},
        traits={"plan": "pro", "beta": True},
        installId="i-" + secrets.token_hex(4),
    )
    apns = await register(
        gateway, "/v1/push/devices", kind="apns", nativeToken=secrets.token_hex(32), env="sandbox"
    )
    out = await send(
        gateway,
        "/v1/push/sends",
        spTokens=[dev["spToken"]],
        nativeTokens=[apns["nativeToken"]],
        payload={"title": "Hi", "body": "both"},
        idempotencyKey="k-1",
    )
    assert out["queued"] == 2
    done = await gateway.wait_done(out["sendId"])
    assert done["counts"]["sent"] == 2 and set(done["by_provider"]) == {"apns", "webpush"}
    replay = await gateway.client.post(
        "/v1/push/sends",
        json={"spTokens": [dev["spToken"]], "payload": {"title": "Hi"}, "idempotencyKey": "k-1"},
    )
    assert replay.json()["sendId"] == out["sendId"]

    count = await gateway.client.post("/v1/push/audience/count", json={"traits": {"plan": "pro"}})
    assert count.status_code == 200 and count.json()["matched"] == 1
    tree = {"all": [{"trait": "beta", "is": True}, {"device": "kind", "in": ["webpush"]}]}
    assert (await gateway.client.post("/v1/push/audience/count", json={"audience": tree})).json()[
        "matched"
    ] == 1
    aud = await send(gateway, "/v1/push/sends", audience=tree, payload={"title": "aud"})
    assert (await gateway.wait_done(aud["sendId"]))["counts"]["sent"] == 1

    r = await gateway.client.delete(f"/v1/push/devices/{apns['spToken']}")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert (await gateway.client.get(f"/v1/devices/dev_{apns['spToken'][4:]}")).status_code == 404
    r = await gateway.client.delete(f"/v1/push/devices/{apns['spToken']}")
    assert r.status_code == 404 and r.json()["error"] == "device_token_not_found"


async def test_bad_input_answers_sentoris_errors(gateway: Gateway) -> None:
    c = gateway.client
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/v1/push/tokens", {"kind": "gcm", "nativeToken": "x"}, 400, "invalid_kind"),
        ("POST", "/v1/push/tokens", {"kind": "fcm"}, 400, "invalid_body"),
        ("POST", "/v1/push/tokens", {"kind": "fcm", "nativeToken": 5}, 400, "invalid_body"),
        ("POST", "/v1/push/tokens", {"kind": "apns", "nativeToken": "zz"}, 400, "invalid_body"),
        (
            "POST",
            "/v1/push/tokens",
            {"kind": "fcm", "nativeToken": fcm_token(), "env": "staging"},
            400,
            "invalid_env",
        ),
        ("POST", "/v1/push/send", {"title": "no target"}, 400, "bad_target"),
        ("POST", "/v1/push/send", {"to": "somebody", "title": "t"}, 400, "bad_target"),
        ("POST", "/v1/push/send", {"to": ["user:u"] * 1001, "title": "t"}, 400, "bad_target"),
        ("POST", "/v1/push/send", {"to": 5, "title": "t"}, 400, "invalid_body"),
        ("POST", "/v1/push/sends", {"spTokens": ["not-a-handle"], "payload": {}}, 400, "bad_target"),
        ("POST", "/v1/push/sends", {"audience": {"trait": "x"}, "payload": {}}, 400, "bad_target"),
        ("POST", "/v1/push/send", {"to": "user:u", "title": "t", "sendAt": "tomorrow"}, 400, "invalid_body"),
        ("POST", "/v1/push/send", {"to": "user:u", "title": "t", "campaignId": "a/b"}, 400, "invalid_body"),
        (
            "POST",
            "/v1/push/send",
            {"to": "user:u", "options": {"interruptionLevel": "loud"}},
            400,
            "invalid_body",
        ),
        ("POST", "/v1/push/send", [1, 2], 400, "invalid_body"),
        ("GET", "/v1/push/sends/pub_nope", None, 404, "send_not_found"),
        ("GET", "/v1/push/deliveries/garbage", None, 404, "delivery_not_found"),
        ("GET", "/v1/push/receipts/pub_x.dev_y", None, 404, "delivery_not_found"),
        ("POST", "/v1/push/tokens/ipt_nope/topics", {"topic": "news"}, 404, "device_token_not_found"),
        ("POST", "/v1/push/tokens/ipt_nope/topics", {"topic": "bad topic!"}, 400, "invalid_topic"),
        ("POST", "/v1/push/tokens/ipt_nope/topics", {}, 400, "invalid_body"),
        ("PUT", "/v1/push/users/u/preferences/marketing", {"optedOut": "yes"}, 400, "invalid_body"),
        ("PUT", "/v1/push/users/u/preferences/bad%20cat", {"optedOut": True}, 400, "invalid_category"),
        ("POST", "/v1/push/audience/count", {}, 400, "bad_target"),
        ("POST", "/v1/push/audience/count", {"audience": {"any": "x"}}, 400, "bad_target"),
    ]
    for method, path, body, status, code in cases:
        r = await c.request(method, path, json=body)
        assert (r.status_code, r.json().get("error")) == (status, code), (method, path, body, r.text)
        assert "detail" in r.json() or status == 404, r.text
    big = {"to": "user:u", "title": "x" * (gateway.settings.server.max_body_bytes + 10)}
    r = await c.post("/v1/push/send", json=big)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    r = await c.post("/v1/push/send", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_body"
    assert (await c.get("/v1/push/publishes")).status_code in (404, 405)
    assert (await c.get("/v1/publishes")).json()["items"] == []  # nothing was admitted


async def test_own_auth_and_native_routes_untouched(gateway: Gateway) -> None:
    """The front-end authenticates with the app key as ``Authorization: Bearer`` in its own
    error shape; the native ``/v1`` router's hooks do not run on it, nor its on them."""
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        r = await anon.post("/v1/push/send", json={"to": "user:u", "title": "t"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await anon.post("/v1/push/expo-compat/send", json={"to": "ExponentPushToken[x]"})
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        r = await anon.get("/v1/devices")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    wrong = gateway.as_app("wrong-key-0123456789abcdef")
    r = await wrong.get("/v1/push/users/u/preferences")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    await wrong.aclose()
    key = (await gateway.client.post("/v1/keys", json={"name": "reader", "scopes": ["read"]})).json()[
        "secret"
    ]
    async with gateway.as_app(key) as reader:
        r = await reader.post("/v1/push/send", json={"to": "user:u", "title": "t"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert (await reader.get("/v1/push/users/u/preferences")).status_code == 200
    assert (await gateway.client.get("/v1/devices")).status_code == 200
    r = await gateway.client.post("/v1/devices", json={"provider": "fcm"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
