"""The Centrifugo PRO push API front-end (docs/compat.md): the seed document's request example
replayed as written, each method's answer shape, one registry with the native API, sends that
arrive at the lab, receipts that move the native counters, and Centrifugo's error shape."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
import sqlalchemy as sa
from support.api import fcm_token
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.store.schema import publish_stats


def centrifugo(gw: Gateway, header: str = "x-api-key") -> httpx.AsyncClient:
    """A backend's HTTP client as Centrifugo's docs show it: the key in ``X-API-Key`` or
    ``Authorization: apikey <key>``."""
    value = gw.key if header == "x-api-key" else f"apikey {gw.key}"
    return httpx.AsyncClient(base_url=gw.url, headers={header: value}, timeout=30)


async def call(client: httpx.AsyncClient, method: str, params: dict[str, Any]) -> Any:
    """``POST /api/<method>``; asserts HTTP 200 and no error, returns ``result``."""
    r = await client.post(f"/api/{method}", json=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "error" not in body, body
    return body["result"]


async def error_of(client: httpx.AsyncClient, method: str, params: Any, status: int = 200) -> dict[str, Any]:
    r = await client.post(f"/api/{method}", json=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


def apns_token() -> str:
    return secrets.token_hex(32)


async def test_seed_example_send_to_channel_arrives(gateway: Gateway, lab: Lab) -> None:
    """The seed document's only request example, replayed as written (host and key
    substituted): ``POST /api`` with ``Authorization: apikey``, ``{"method", "params"}``."""
    async with centrifugo(gateway, "authorization") as c:
        token = fcm_token()
        reg = await c.post(
            "/api",
            json={
                "method": "device_register",
                "params": {"provider": "fcm", "token": token, "platform": "android", "channels": ["test"]},
            },
        )
        assert reg.status_code == 200 and set(reg.json()["result"]) >= {"id", "device"}
        r = await c.post(
            "/api",
            content=b"""
{
    "method": "send_push_notification",
    "params": {
        "recipient": {"channels": ["test"]},
        "notification": {
            "fcm": {
                "message": {
                    "notification": {"title": "Hello", "body": "How are you?"}
                }
            }
        }
    }
}
""",
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result"} and set(body["result"]) == {"uid"} and body["result"]["uid"]
    status = await gateway.wait_done(body["result"]["uid"])
    assert status["counts"]["sent"] == 1
    [item] = lab.ledger("fcm", token=token)["items"]
    assert item["message"]["notification"] == {"title": "Hello", "body": "How are you?"}


async def test_device_register_is_one_registry_with_the_native_api(gateway: Gateway) -> None:
    async with centrifugo(gateway) as c:
        token = fcm_token()
        params = {
            "provider": "fcm",
            "token": token,
            "platform": "android",
            "user": "u1",
            "meta": {"model": "pixel"},
            "topics": ["news", "sport"],
            "timezone": "Europe/Berlin",
            "locale": "de-DE",
        }
        res = await call(c, "device_register", params)
        dev_id = res["id"]
        assert res["device"]["id"] == dev_id and res["device"]["token"] == token
        native = (await gateway.client.get(f"/v1/devices/{dev_id}")).json()["device"]
        assert (native["user"], native["timezone"], native["locale"]) == ("u1", "Europe/Berlin", "de-DE")
        assert sorted(native["channels"]) == ["news", "sport"] and native["meta"] == {"model": "pixel"}
        # provider + token is unique: registering again without an id is the same device, and
        # a registration replaces the whole state (what is left out is cleared).
        again = await call(c, "device_register", {"provider": "fcm", "token": token, "platform": "android"})
        assert again["id"] == dev_id
        native = (await gateway.client.get(f"/v1/devices/{dev_id}")).json()["device"]
        assert native.get("user") is None and not native.get("channels") and native.get("timezone") is None
        # A device registered natively is listed here with the same topics.
        r = await gateway.client.post(
            "/v1/devices",
            json={"provider": "fcm", "token": fcm_token(), "platform": "ios", "channels": ["x"]},
        )
        other = r.json()["device"]["id"]
        page = await call(c, "device_list", {"filter": {"ids": [other]}, "include_topics": True})
        assert [(d["id"], d["topics"], d["platform"]) for d in page["items"]] == [(other, ["x"], "ios")]


async def test_device_update_remove_and_list_paging(gateway: Gateway) -> None:
    async with centrifugo(gateway) as c:
        ids = [
            (
                await call(
                    c,
                    "device_register",
                    {"provider": "fcm", "token": fcm_token(), "platform": "android", "user": "ann"},
                )
            )["id"]
            for _ in range(3)
        ]
        await call(
            c,
            "device_update",
            {
                "users": ["ann"],
                "timezone_update": {"timezone": "Asia/Tokyo"},
                "locale_update": {"locale": "ja"},
                "meta_update": {"meta": {"k": "v"}},
                "topics_update": {"op": "add", "topics": ["t1"]},
            },
        )
        await call(c, "device_update", {"ids": [ids[0]], "user_update": {"user": "bob"}})
        page = await call(
            c,
            "device_list",
            {
                "filter": {"users": ["ann"], "topics": ["t1"]},
                "limit": 1,
                "include_total_count": True,
                "include_meta": True,
            },
        )
        assert page["total_count"] == 2 and len(page["items"]) == 1 and page["next_cursor"]
        assert page["items"][0]["meta"] == {"k": "v"} and page["items"][0]["timezone"] == "Asia/Tokyo"
        nxt = await call(
            c, "device_list", {"filter": {"users": ["ann"]}, "cursor": page["next_cursor"], "limit": 1}
        )
        assert nxt["next_cursor"] == "" and len(nxt["items"]) == 1
        assert {page["items"][0]["id"], nxt["items"][0]["id"]} == set(ids[1:])
        bob = await call(c, "device_list", {"filter": {"users": ["bob"]}})
        assert [d["id"] for d in bob["items"]] == [ids[0]] and bob["items"][0]["user"] == "bob"
        assert (await call(c, "device_remove", {"users": ["ann"]})) == {}
        left = await call(c, "device_list", {"filter": {"ids": ids}, "include_total_count": True})
        assert [d["id"] for d in left["items"]] == [ids[0]] and left["total_count"] == 1
        assert (await gateway.client.get(f"/v1/devices/{ids[1]}")).status_code == 404


async def test_seed_document_names_still_work(gateway: Gateway) -> None:
    """The seed document's older shapes: ``channels``/``tags`` on register, the flat
    ``device_list`` filter with ``since``/``has_more``, ``push_user_channel_*``."""
    token = fcm_token()
    async with centrifugo(gateway) as c:
        res = await call(
            c,
            "device_register",
            {
                "provider": "fcm",
                "token": token,
                "platform": "web",
                "user": "u9",
                "channels": ["a"],
                "tags": {"plan": "pro"},
            },
        )
        dev = res["device"]
        assert {"id", "provider", "token", "platform", "user"} <= set(dev) and dev["user"] == "u9"
        await call(c, "push_user_channel_update", {"user": "u9", "op": "add", "channels": ["bound"]})
        page = await call(c, "device_list", {"users": ["u9"], "include_channels": True, "include_tags": True})
        assert page["has_more"] is False
        [d] = page["items"]
        assert d["channels"] == ["a", "bound"] and d["tags"] == {"plan": "pro"}
        by_token = await call(c, "device_list", {"tokens": [token]})
        assert [d["id"] for d in by_token["items"]] == [dev["id"]]
        assert (await call(c, "device_list", {"tokens": [fcm_token()], "limit": 5}))["items"] == []
        other = await call(c, "device_register", {"provider": "fcm", "token": fcm_token(), "platform": "ios"})
        first = await call(c, "device_list", {"limit": 1})
        assert first["has_more"] is True
        rest = await call(c, "device_list", {"limit": 1, "since": first["next_cursor"]})
        assert rest["has_more"] is False
        assert {first["items"][0]["id"], rest["items"][0]["id"]} == {dev["id"], other["id"]}
        listed = await call(c, "push_user_channel_list", {"users": ["u9"]})
        assert [(i["user"], i["channel"]) for i in listed["items"]] == [("u9", "bound")] and listed["items"][
            0
        ]["id"]
        await call(c, "device_update", {"ids": [dev["id"]], "channels_update": {"channels": ["c"]}})
        native = (await gateway.client.get(f"/v1/devices/{dev['id']}")).json()["device"]
        assert sorted(native["channels"]) == ["bound", "c"]


async def test_topics_devices_and_users(gateway: Gateway) -> None:
    async with centrifugo(gateway) as c:
        d1 = (
            await call(
                c,
                "device_register",
                {"provider": "fcm", "token": fcm_token(), "platform": "android", "user": "u1"},
            )
        )["id"]
        d2 = (await call(c, "device_register", {"provider": "fcm", "token": fcm_token(), "platform": "ios"}))[
            "id"
        ]
        await call(c, "device_topic_update", {"device_id": d1, "op": "add", "topics": ["a", "b", "c"]})
        await call(c, "device_topic_update", {"device_id": d2, "op": "set", "topics": ["b"]})
        await call(c, "device_topic_update", {"device_id": d1, "op": "remove", "topics": ["c"], "user": "u1"})
        err = await error_of(
            c, "device_topic_update", {"device_id": d1, "op": "add", "topics": ["x"], "user": "u2"}
        )
        assert err["code"] == 113
        err = await error_of(
            c, "device_topic_update", {"device_id": "dev_nope", "op": "add", "topics": ["x"]}
        )
        assert err["code"] == 104
        pairs: list[tuple[str, str]] = []
        cursor = ""
        while True:
            page = await call(
                c,
                "device_topic_list",
                {"filter": {"topic_prefix": ""}, "limit": 2, "cursor": cursor, "include_device": True},
            )
            pairs += [(i["device"]["id"], i["topic"]) for i in page["items"]]
            assert all(i["id"] and i["device"]["provider"] == "fcm" for i in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(pairs) == sorted([(d1, "a"), (d1, "b"), (d2, "b")])
        only_b = await call(c, "device_topic_list", {"filter": {"topics": ["b"], "device_users": ["u1"]}})
        assert [(i["device"]["id"], i["topic"]) for i in only_b["items"]] == [(d1, "b")]
        # A user's topics reach the user's devices now, and the ones registered later.
        await call(c, "user_topic_update", {"user": "u1", "op": "set", "topics": ["promo"]})
        d3 = (
            await call(
                c,
                "device_register",
                {"provider": "fcm", "token": fcm_token(), "platform": "android", "user": "u1"},
            )
        )["id"]
        for dev in (d1, d3):
            native = (await gateway.client.get(f"/v1/devices/{dev}")).json()["device"]
            assert "promo" in native["channels"], native
        listed = await call(c, "user_topic_list", {"filter": {"users": ["u1"]}})
        assert [(i["user"], i["topic"]) for i in listed["items"]] == [("u1", "promo")]
        assert (await call(c, "user_topic_list", {"filter": {"topic_prefix": "zz"}}))["items"] == []


async def test_send_to_raw_tokens_topics_and_filters(gateway: Gateway, lab: Lab) -> None:
    async with centrifugo(gateway) as c:
        fcm = fcm_token()
        apns = apns_token()
        uid = "3f1c2e0a-6d2b-4a57-9b84-1f0e6b7e4d11"
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"fcm_tokens": [fcm]},
                "notification": {"fcm": {"message": {"data": {"k": "v"}}}},
                "uid": uid,
            },
        )
        assert res == {"uid": uid}
        assert (await gateway.wait_done(uid))["counts"]["sent"] == 1
        data = lab.ledger("fcm", token=fcm)["items"][0]["message"]["data"]
        assert '"d":"tok_' in data.pop("pushgate") and data == {"k": "v"}  # the message id (docs/receipts.md)
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"apns_tokens": [apns]},
                "notification": {
                    "apns": {"headers": {"apns-push-type": "alert"}, "payload": {"aps": {"alert": "hi"}}}
                },
            },
        )
        assert (await gateway.wait_done(res["uid"]))["counts"]["sent"] == 1
        [item] = lab.ledger("apns", token=apns)["items"]
        assert item["payload"]["aps"]["alert"] == "hi"
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"fcm_topic": "news"},
                "notification": {"fcm": {"message": {"notification": {"title": "T"}}}},
            },
        )
        await gateway.wait_done(res["uid"])
        assert any(i["message"].get("topic") == "news" for i in lab.ledger("fcm")["items"])
        # A filter combining fields is a native audience filter: only android devices of u7.
        want = fcm_token()
        for token, platform in ((want, "android"), (fcm_token(), "ios")):
            await call(
                c, "device_register", {"provider": "fcm", "token": token, "platform": platform, "user": "u7"}
            )
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"filter": {"users": ["u7"], "platforms": ["android"]}},
                "notification": {"fcm": {"message": {"notification": {"title": "F"}}}},
            },
        )
        status = await gateway.wait_done(res["uid"])
        assert status["counts"]["sent"] == 1 and len(lab.ledger("fcm", token=want)["items"]) == 1


async def test_send_at_and_cancel_push(gateway: Gateway, lab: Lab) -> None:
    async with centrifugo(gateway) as c:
        token = fcm_token()
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"fcm_tokens": [token]},
                "notification": {"fcm": {"message": {"notification": {"title": "later"}}}},
                "send_at": int(time.time()) + 3600,
                "limit_strategy": {
                    "time_limit": {"send_after_time": "09:00:00", "send_before_time": "18:00:00"}
                },
            },
        )
        native = (await gateway.client.get(f"/v1/publishes/{res['uid']}")).json()
        assert native["status"] == "scheduled" and native["send_at"]
        assert await call(c, "cancel_push", {"uid": res["uid"]}) == {}
        native = (await gateway.client.get(f"/v1/publishes/{res['uid']}")).json()
        assert native["status"] == "cancelled"
        assert (await error_of(c, "cancel_push", {"uid": "no-such-push"}))["code"] == 104
    assert lab.ledger("fcm", token=token)["items"] == []


async def _receipts(gw: Gateway, uid: str) -> tuple[int, int]:
    """The publish's receipt counters (delivered, opened), read from the database."""
    services = gw.app.state.services
    pub = (await gw.client.get(f"/v1/publishes/{uid}")).json()
    sid = pub.get("server_id") or pub["id"]
    async with services.db.read() as conn:
        row = (
            await conn.execute(
                sa.select(sa.func.sum(publish_stats.c.delivered), sa.func.sum(publish_stats.c.opened)).where(
                    publish_stats.c.publish_id == sid
                )
            )
        ).one()
    return int(row[0] or 0), int(row[1] or 0)


async def test_update_push_status_moves_the_native_counts(gateway: Gateway) -> None:
    async with centrifugo(gateway) as c:
        dev = (
            await call(c, "device_register", {"provider": "fcm", "token": fcm_token(), "platform": "android"})
        )["id"]
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"filter": {"ids": [dev]}},
                "notification": {"fcm": {"message": {"data": {"a": "b"}}}},
            },
        )
        uid = res["uid"]
        await gateway.wait_done(uid)
        assert await _receipts(gateway, uid) == (0, 0)
        status = {"analytics_uid": uid, "device_id": dev, "status": "delivered", "msg_id": "m1"}
        assert await call(c, "update_push_status", status) == {}
        assert await call(c, "update_push_status", status) == {}  # a retry counts once
        assert await _receipts(gateway, uid) == (1, 0)
        assert await call(c, "update_push_status", {**status, "status": "interacted"}) == {}
        assert await _receipts(gateway, uid) == (1, 1)
        err = await error_of(c, "update_push_status", {**status, "device_id": "dev_other"})
        assert err["code"] == 104
        err = await error_of(c, "update_push_status", {**status, "status": "opened"})
        assert err["code"] == 107


async def test_auth_and_transport_errors(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as anon:
        r = await anon.post("/api/device_list", json={})
        assert r.status_code == 401 and r.json()["error"]["code"] == 101
        r = await anon.post("/api/device_list", json={}, headers={"X-API-Key": "wrong-key-000000000000"})
        assert r.status_code == 401 and r.json()["error"]["code"] == 101
        r = await anon.post("/api", content=b"{not json", headers={"X-API-Key": "wrong-key-000000000000"})
        assert r.status_code == 401
        r = await anon.post("/api/device_list?api_key=" + gateway.key, json={})
        assert r.status_code == 200 and r.json() == {
            "result": {"items": [], "next_cursor": "", "has_more": False}
        }
    async with centrifugo(gateway, "authorization") as c:
        err = await error_of(c, "no_such_method", {}, status=404)
        assert err["code"] == 104
        r = await c.post("/api", json={"method": "no_such_method", "params": {}})
        assert r.status_code == 200 and r.json()["error"]["code"] == 104
        r = await c.post("/api/device_register", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["code"] == 107
        bodies: list[Any] = [{"params": {}}, {"method": ["device_list"]}, [1], "device_list"]
        for body in bodies:
            r = await c.post("/api", json=body)
            assert r.status_code == 200 and r.json()["error"]["code"] == 107, (body, r.text)
        r = await c.post("/api/device_list", content=b'{"x": "' + b"y" * 1_100_000 + b'"}')
        assert r.status_code == 413 and r.json()["error"]["code"] == 106


BAD_PARAMS: list[tuple[str, Any, int]] = [
    ("device_register", {"token": "t" * 30, "platform": "android"}, 107),
    ("device_register", {"provider": "fcm", "token": "t" * 30, "platform": "toaster"}, 107),
    ("device_register", {"provider": "nope", "token": "t" * 30, "platform": "android"}, 107),
    (
        "device_register",
        {"provider": "fcm", "token": "t" * 30, "platform": "android", "timezone": "Mars/Base"},
        107,
    ),
    (
        "device_register",
        {"provider": "fcm", "token": "t" * 30, "platform": "android", "topics": ["bad topic!"]},
        107,
    ),
    ("device_register", {"provider": "fcm", "token": "t" * 30, "platform": "android", "colour": "red"}, 107),
    (
        "device_register",
        {"id": "dev_missing", "provider": "fcm", "token": "t" * 30, "platform": "android"},
        104,
    ),
    ("device_register", [1, 2], 107),
    ("device_update", {"ids": ["x"]}, 107),
    ("device_update", {"user_update": {"user": "a"}}, 107),
    ("device_update", {"ids": ["x"], "topics_update": {"op": "merge", "topics": ["a"]}}, 107),
    ("device_remove", {}, 107),
    ("device_list", {"limit": 10_000_000}, 107),
    ("device_list", {"cursor": "garbage!"}, 107),
    ("device_list", {"filter": {"ids": "notalist"}}, 107),
    ("device_topic_update", {"device_id": "x", "op": "add", "topics": []}, 107),
    ("device_topic_list", {"include_total_count": True}, 108),
    ("user_topic_update", {"user": "", "op": "add", "topics": ["a"]}, 107),
    ("user_topic_update", {"user": "u", "op": "add"}, 107),
    ("send_push_notification", {"recipient": {}, "notification": {"fcm": {"message": {}}}}, 107),
    (
        "send_push_notification",
        {"recipient": {"fcm_tokens": ["a" * 30], "fcm_topic": "x"}, "notification": {"fcm": {"message": {}}}},
        107,
    ),
    ("send_push_notification", {"recipient": {"fcm_tokens": ["a" * 30]}, "notification": {}}, 107),
    (
        "send_push_notification",
        {"recipient": {"fcm_topic": "bad topic!"}, "notification": {"fcm": {"message": {}}}},
        107,
    ),
    ("send_push_notification", {"recipient": {"filter": {}}, "notification": {"fcm": {"message": {}}}}, 107),
    (
        "send_push_notification",
        {"recipient": {"filter": {"ids": ["a"], "users": ["b"]}}, "notification": {"fcm": {"message": {}}}},
        108,
    ),
    (
        "send_push_notification",
        {
            "recipient": {"fcm_tokens": ["a" * 30]},
            "notification": {"fcm": {"message": {}}},
            "use_templating": True,
        },
        108,
    ),
    (
        "send_push_notification",
        {
            "recipient": {"fcm_tokens": ["a" * 30]},
            "notification": {"fcm": {"message": {}}},
            "limit_strategy": {"rate_limit": {"policies": [{"rate": 1, "interval_ms": 1500}]}},
        },
        107,
    ),
    ("send_push_notification", {"recipient": {"fcm_tokens": ["a" * 30]}}, 107),
    (
        "send_push_notification",
        {"recipient": {"fcm_tokens": ["a" * 30]}, "notification": {"fcm": {"message": {}}}, "uid": "a b"},
        107,
    ),
    (
        "send_push_notification",
        {
            "recipient": {"fcm_tokens": ["a" * 30]},
            "notification": {"fcm": {"message": {}}},
            "analytics_uid": "a/b",
        },
        107,
    ),
    ("update_push_status", {"analytics_uid": "x", "status": "delivered"}, 107),
    ("cancel_push", {}, 107),
]


async def test_bad_params_answer_centrifugo_errors(gateway: Gateway) -> None:
    async with centrifugo(gateway) as c:
        for method, params, code in BAD_PARAMS:
            err = await error_of(c, method, params)
            assert err["code"] == code, (method, params, err)
            assert err["message"], err
    # Nothing of them was stored.
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []
    assert (await gateway.client.get("/v1/devices")).json()["items"] == []


async def test_send_to_topics_filter_reaches_subscribed_devices(gateway: Gateway, lab: Lab) -> None:
    """A filter by topics reaches a device subscribed through ``device_topic_update``, and
    only it."""
    async with centrifugo(gateway) as c:
        token = fcm_token()
        dev = (await call(c, "device_register", {"provider": "fcm", "token": token, "platform": "android"}))[
            "id"
        ]
        await call(c, "device_register", {"provider": "fcm", "token": fcm_token(), "platform": "android"})
        await call(c, "device_topic_update", {"device_id": dev, "op": "add", "topics": ["alerts"]})
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"filter": {"topics": ["alerts"]}},
                "notification": {"fcm": {"message": {"data": {"x": "1"}}}},
            },
        )
        status = await gateway.wait_done(res["uid"])
    assert status["counts"]["planned"] == 1 and status["counts"]["sent"] == 1
    [item] = lab.ledger("fcm")["items"]
    assert '"d":"dev_' in item["message"]["data"].pop("pushgate")  # the message id
    assert item["message"]["token"] == token and item["message"]["data"] == {"x": "1"}


async def test_scopes_apply_like_on_the_native_api(gateway: Gateway) -> None:
    """A key's scopes (docs/api.md) decide which Centrifugo methods it may call: a 403 with
    Centrifugo's code 103, and nothing done."""
    r = await gateway.client.post("/v1/keys", json={"name": "reader", "scopes": ["read"]})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    async with httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": secret}, timeout=30) as reader:
        assert (await call(reader, "device_list", {}))["items"] == []
        params = {"provider": "fcm", "token": fcm_token(), "platform": "android"}
        err = await error_of(reader, "device_register", params, status=403)
        assert err["code"] == 103
        r = await reader.post("/api", json={"method": "send_push_notification", "params": {}})
        assert r.status_code == 403 and r.json()["error"]["code"] == 103
    assert (await gateway.client.get("/v1/devices")).json()["items"] == []


async def test_send_to_hms_and_webpush_tokens(gateway: Gateway, lab: Lab) -> None:
    hms = "IQAAAACy0" + secrets.token_urlsafe(60)
    sub = lab.subscription()
    async with centrifugo(gateway) as c:
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"hms_tokens": [hms]},
                "notification": {"hms": {"message": {"data": '{"k":"v"}'}}},
            },
        )
        assert (await gateway.wait_done(res["uid"]))["counts"]["sent"] == 1
        res = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"webpush_tokens": [json.dumps(sub)]},
                "notification": {"webpush": {"headers": {"TTL": "60"}, "payload": '{"title": "web"}'}},
            },
        )
        assert (await gateway.wait_done(res["uid"]))["counts"]["sent"] == 1
    [h] = lab.ledger("hms")["items"]
    data = json.loads(h["message"]["data"])
    assert data.pop("pushgate")["p"].startswith("pub_") and data == {"k": "v"}  # HMS: publish id only
    assert lab.ledger("webpush", token=sub["endpoint"])["total"] == 1


async def test_device_topic_list_pages_through_a_sparse_registry(gateway: Gateway) -> None:
    """A topic filter that few devices match answers short pages with a cursor (it reads at most
    a few device pages per request) and every matching pair exactly once."""
    async with centrifugo(gateway) as c:
        ids = []
        for i in range(13):
            topics = ["zz-last"] if i == 12 else ["other"]
            res = await call(
                c,
                "device_register",
                {"provider": "fcm", "token": fcm_token(), "platform": "android", "topics": topics},
            )
            ids.append(res["id"])
        seen: list[tuple[str, str]] = []
        cursor, calls = "", 0
        while True:
            page = await call(
                c, "device_topic_list", {"filter": {"topic_prefix": "zz"}, "limit": 1, "cursor": cursor}
            )
            calls += 1
            seen += [(i["device"]["id"], i["topic"]) for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [(ids[12], "zz-last")] and calls >= 2


async def test_prefix_and_disabled(database_url: str, lab: Lab) -> None:
    """``[compat.centrifugo] prefix`` moves the routes; ``enabled = false`` takes them away."""
    settings = gateway_settings(database_url, lab, PUSHGATE_COMPAT_CENTRIFUGO_PREFIX="/centrifugo")
    async with running_gateway(settings) as gw, centrifugo(gw) as c:
        assert (await c.post("/centrifugo/api/device_list", json={})).json()["result"]["items"] == []
        assert (await c.post("/api/device_list", json={})).status_code == 404
    settings = gateway_settings(database_url, lab, PUSHGATE_COMPAT_CENTRIFUGO_ENABLED="false")
    async with running_gateway(settings) as gw, centrifugo(gw) as c:
        r = await c.post("/api", json={"method": "device_list", "params": {}})
        assert r.status_code in (404, 405) and "result" not in r.text


async def test_limit_strategy_is_native_policy(gateway: Gateway, lab: Lab) -> None:
    """``rate_limit`` is a frequency cap (a second push within the interval is dropped with
    ``drop_if_rate_limited``); ``time_limit`` a delivery window (outside it: held)."""
    async with centrifugo(gateway) as c:
        token = fcm_token()
        params = {"provider": "fcm", "token": token, "platform": "android", "timezone": "UTC"}
        dev = (await call(c, "device_register", params))["id"]
        capped = {
            "recipient": {"filter": {"ids": [dev]}},
            "notification": {"fcm": {"message": {"data": {"n": "1"}}}},
            "limit_strategy": {
                "rate_limit": {
                    "key": "{{ .device.id }}",
                    "policies": [{"rate": 1, "interval_ms": 3_600_000}],
                    "drop_if_rate_limited": True,
                }
            },
        }
        first = await call(c, "send_push_notification", capped)
        assert (await gateway.wait_done(first["uid"]))["counts"]["sent"] == 1
        second = await call(c, "send_push_notification", capped)
        status = await gateway.wait_done(second["uid"])
        assert status["counts"]["sent"] == 0 and status["counts"]["suppressed"] == 1
        assert status["suppressed_by_reason"] == {"frequency_cap": 1}
        # A window that opens two hours from now (UTC, the device's zone): held until then.
        hour = time.gmtime().tm_hour
        window = {
            "send_after_time": f"{(hour + 2) % 24:02d}:00:00",
            "send_before_time": f"{(hour + 3) % 24:02d}:00:00",
        }
        later = await call(
            c,
            "send_push_notification",
            {
                "recipient": {"filter": {"ids": [dev]}},
                "notification": {"fcm": {"message": {"data": {"n": "2"}}}},
                "limit_strategy": {"time_limit": window},
            },
        )

        async def held() -> dict[str, Any] | None:
            pub = (await gateway.client.get(f"/v1/publishes/{later['uid']}")).json()
            return pub if pub["counts"]["held"] == 1 else None

        await wait_for(held, 30, "the push held by its time_limit")
        await call(c, "cancel_push", {"uid": later["uid"]})
    assert len(lab.ledger("fcm", token=token)["items"]) == 1
