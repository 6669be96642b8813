"""gorush's API on pushgate (docs/compat.md, "gorush"): ``POST /api/push`` with gorush's request
shapes (compat.md §4 and gorush's README) arriving at the lab's APNs, FCM and HMS, sync-mode
logs from the delivery records, ``/api/stat/app`` counters, ``require_key`` and gorush's 400s.

There is no official gorush client library on PyPI or npm (gorush's own clients are Go and its
gRPC proto), so the requests are replayed over HTTP as gorush's README writes them.
"""

from __future__ import annotations

import json
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.api import fcm_token
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab

from pushgate.domain.status import CLOSED


def _apns_token() -> str:
    return secrets.token_hex(32)


def _hms_token() -> str:
    return "hms-" + secrets.token_hex(12)


def _bearer(gw: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.key}"}


async def _push(gw: Gateway, body: Any, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as c:
        return await c.post("/api/push", json=body, headers=kw.pop("headers", _bearer(gw)), **kw)


async def _wait_all(gw: Gateway, response: httpx.Response) -> list[dict[str, Any]]:
    ids = [i for i in response.headers["X-Pushgate-Publish-Ids"].split(",") if i]
    return [await gw.wait_done(i) for i in ids]


@pytest.fixture
async def open_gateway(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    """``[compat.gorush] require_key = false``, sync on: gorush as most deployments run it."""
    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_COMPAT_GORUSH_REQUIRE_KEY="false", PUSHGATE_COMPAT_GORUSH_SYNC="true"
    )
    async with running_gateway(settings) as gw:
        yield gw


async def test_readme_example_reaches_apns_and_fcm(gateway: Gateway, lab: Lab) -> None:
    ios, android = [_apns_token(), _apns_token()], [fcm_token(), fcm_token()]
    r = await _push(
        gateway,
        {
            "notifications": [
                {"tokens": ios, "platform": 1, "message": "Hello World iOS!"},
                {"tokens": android, "platform": 2, "message": "Hello World Android!"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": "ok", "counts": 4, "logs": []}
    statuses = await _wait_all(gateway, r)
    assert [s["counts"]["sent"] for s in statuses] == [2, 2]
    apns = {i["token"]: i for i in lab.ledger("apns")["items"]}
    assert set(apns) == set(ios)
    assert apns[ios[0]]["payload"]["aps"]["alert"] == {"body": "Hello World iOS!"}
    fcm = {i["message"]["token"]: i["message"] for i in lab.ledger("fcm")["items"]}
    assert set(fcm) == set(android)
    assert fcm[android[1]]["notification"] == {"body": "Hello World Android!"}


async def test_every_common_and_ios_field_reaches_apns(gateway: Gateway, lab: Lab) -> None:
    token = _apns_token()
    item = {
        "tokens": [token],
        "platform": 1,
        "title": "Gorush",
        "message": "Hello",
        "topic": "com.pushgate.lab",
        "badge": 5,
        "category": "MESSAGE",
        "thread-id": "chat-1",
        "mutable_content": True,
        "sound": {"critical": 1, "name": "default", "volume": 1.0},
        "alert": {"subtitle": "sub", "loc-key": "GREETING", "loc-args": ["Jenna"]},
        "data": {"key1": "welcome", "count": 2, "nested": {"a": True}},
        "collapse_id": "c-1",
        "priority": "high",
        "interruption_level": "time-sensitive",
        "notif_id": "n-1",
    }
    r = await _push(gateway, {"notifications": [item]})
    # gorush counts a set topic as one more, even the bundle id of an iOS notification.
    assert r.json() == {"success": "ok", "counts": 2, "logs": []}, r.text
    [status] = await _wait_all(gateway, r)
    assert status["counts"]["sent"] == 1, status
    [got] = lab.ledger("apns")["items"]
    headers, payload = got["headers"], got["payload"]
    assert headers["apns-topic"] == "com.pushgate.lab"
    assert headers["apns-collapse-id"] == "c-1" and headers["apns-priority"] == "10"
    aps = payload["aps"]
    assert aps["alert"]["title"] == "Gorush" and aps["alert"]["body"] == "Hello"
    assert aps["alert"]["subtitle"] == "sub" and aps["alert"]["loc-key"] == "GREETING"
    assert aps["alert"]["loc-args"] == ["Jenna"]
    assert (aps["badge"], aps["category"], aps["thread-id"]) == (5, "MESSAGE", "chat-1")
    assert aps["mutable-content"] == 1 and aps["interruption-level"] == "time-sensitive"
    assert aps["sound"] == {"critical": 1, "name": "default", "volume": 1.0}
    assert (payload["key1"], payload["count"], payload["nested"]) == ("welcome", 2, {"a": True})


async def test_android_fields_topic_and_passthrough_reach_fcm(gateway: Gateway, lab: Lab) -> None:
    token = fcm_token()
    r = await _push(
        gateway,
        {
            "notifications": [
                {
                    "tokens": [token],
                    "platform": 2,
                    "title": "Hi",
                    "message": "Hello World Android!",
                    "image": "https://example.com/a.png",
                    "priority": "high",
                    "data": {"key1": "welcome", "n": 1},
                    "collapse_key": "ck",
                    "time_to_live": 600,
                    "android": {"notification": {"color": "#ff0000"}},
                    "fcm_options": {"analytics_label": "gorush"},
                },
                {"platform": 2, "topic": "highScores", "message": "Topic message"},
            ]
        },
    )
    assert r.json() == {"success": "ok", "counts": 2, "logs": []}, r.text
    statuses = await _wait_all(gateway, r)
    assert [s["counts"]["sent"] for s in statuses] == [1, 1]
    items = [i["message"] for i in lab.ledger("fcm")["items"]]
    [msg] = [m for m in items if m.get("token") == token]
    assert msg["notification"] == {
        "title": "Hi",
        "body": "Hello World Android!",
        "image": "https://example.com/a.png",
    }
    assert '"d":"tok_' in msg["data"].pop("pushgate")  # the message id (docs/receipts.md)
    assert msg["data"] == {"key1": "welcome", "n": "1"}
    assert msg["android"]["priority"] == "HIGH" and msg["android"]["collapse_key"] == "ck"
    assert msg["android"]["ttl"] == "600s" and msg["android"]["notification"]["color"] == "#ff0000"
    assert msg["fcm_options"] == {"analytics_label": "gorush"}
    [topic] = [m for m in items if "topic" in m]
    assert topic["topic"] == "highScores" and topic["notification"] == {"body": "Topic message"}


async def test_huawei_readme_example_reaches_hms(gateway: Gateway, lab: Lab) -> None:
    tokens = [_hms_token(), _hms_token()]
    r = await _push(
        gateway,
        {
            "notifications": [
                {
                    "tokens": tokens,
                    "platform": 3,
                    "title": "Gorush with HMS",
                    "message": "Hello World Huawei!",
                    "huawei_data": '{"title":"data title"}',
                    "bi_tag": "campaign-7",
                }
            ]
        },
    )
    assert r.json() == {"success": "ok", "counts": 2, "logs": []}, r.text
    [status] = await _wait_all(gateway, r)
    assert status["counts"]["sent"] == 2, status
    ledger = lab.ledger("hms")["items"]
    assert sorted(i["token"] for i in ledger) == sorted(tokens)
    msg = ledger[0]["message"]
    assert msg["android"]["notification"]["title"] == "Gorush with HMS"
    assert msg["android"]["notification"]["body"] == "Hello World Huawei!"
    data = json.loads(msg["data"])
    assert data.pop("pushgate")["p"].startswith("pub_")  # HMS: the publish id only (docs/receipts.md)
    assert data == {"title": "data title"} and msg["android"]["bi_tag"] == "campaign-7"


async def test_sync_logs_name_the_failed_token(open_gateway: Gateway, lab: Lab) -> None:
    good, gone = fcm_token(), fcm_token()
    lab.fault(provider="fcm", tokens=[gone], error="unregistered")
    bad_ios = _apns_token()
    lab.fault(provider="apns", tokens=[bad_ios], error="invalid")
    r = await _push(
        open_gateway,
        {
            "notifications": [
                {"tokens": [good, gone], "platform": 2, "message": "sync", "notif_id": "n-7"},
                {"tokens": [bad_ios, _apns_token()], "platform": 1, "message": "sync ios"},
            ]
        },
        headers={},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] == "ok" and body["counts"] == 4
    logs = sorted(body["logs"], key=lambda e: e["platform"])
    assert [(e["type"], e["platform"], e["token"]) for e in logs] == [
        ("failed-push", "android", gone),
        ("failed-push", "ios", bad_ios),
    ]
    assert logs[0]["notif_id"] == "n-7" and logs[0]["message"] == "sync" and logs[0]["error"]
    assert "notif_id" not in logs[1] and logs[1]["error"]
    # Everything the answer reports on was closed before it was given.
    statuses = [
        (await open_gateway.client.get(f"/v1/publishes/{i}")).json()["status"]
        for i in r.headers["X-Pushgate-Publish-Ids"].split(",")
    ]
    assert all(s in CLOSED for s in statuses), statuses
    # A request may turn sync off for itself.
    r = await _push(
        open_gateway, {"notifications": [{"tokens": [gone], "platform": 2, "message": "x"}], "sync": False}
    )
    assert r.json() == {"success": "ok", "counts": 1, "logs": []}


async def test_stat_app_counts_per_platform(open_gateway: Gateway, lab: Lab) -> None:
    async with httpx.AsyncClient(base_url=open_gateway.url) as c:
        before = (await c.get("/api/stat/app")).json()
        assert before["ios"] == {"push_success": 0, "push_error": 0}
        assert before["android"] == before["huawei"] == before["ios"]
        assert before["submitted_tasks"] == before["total_count"] == 0 and "version" in before
        gone = fcm_token()
        lab.fault(provider="fcm", tokens=[gone], error="unregistered")
        r = await c.post(
            "/api/push",
            json={
                "notifications": [
                    {"tokens": [fcm_token(), gone], "platform": 2, "message": "a"},
                    {"tokens": [_apns_token()], "platform": 1, "message": "b"},
                    {"tokens": [_hms_token()], "platform": 3, "message": "c"},
                ]
            },
        )
        assert r.status_code == 200 and len(r.json()["logs"]) == 1, r.text
        after = (await c.get("/api/stat/app")).json()
    assert after["android"] == {"push_success": 1, "push_error": 1}
    assert after["ios"] == {"push_success": 1, "push_error": 0}
    assert after["huawei"] == {"push_success": 1, "push_error": 0}
    assert (after["submitted_tasks"], after["success_tasks"], after["total_count"]) == (3, 3, 4)
    assert after["failure_tasks"] == 0 and after["busy_workers"] == 0


async def test_stat_go_healthz_and_metrics(open_gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=open_gateway.url) as c:
        go = (await c.get("/api/stat/go")).json()
        assert go["go_version"].startswith("python") and go["cpu_num"] >= 1
        assert go["memory_sys"] > 0 and go["goroutine_num"] >= 1 and isinstance(go["gc_pause"], list)
        assert {"time", "go_os", "go_arch", "heap_objects", "gc_num", "memory_alloc"} <= set(go)
        assert (await c.get("/healthz")).status_code == 200
        probe = await c.head("/healthz")  # gorush's clients and load balancers probe with HEAD
        assert probe.status_code == 200 and probe.content == b""
        metrics = await c.get("/metrics")
        assert metrics.status_code == 200 and "# TYPE" in metrics.text


async def test_require_key(gateway: Gateway, lab: Lab) -> None:
    body = {"notifications": [{"tokens": [fcm_token()], "platform": 2, "message": "k"}]}
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": "Basic x"}):
        r = await _push(gateway, body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["code"] == 401 and r.json()["message"] and set(r.json()) == {"code", "message"}
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        assert (await c.get("/api/stat/app")).status_code == 401
        assert (await c.get("/api/stat/go")).status_code == 401
        assert (await c.get("/api/stat/app", headers=_bearer(gateway))).status_code == 200
    r = await _push(gateway, body)
    assert r.status_code == 200 and r.json()["logs"] == [], r.text
    # Sync is off in this configuration; a request turns it on for itself.
    gone = fcm_token()
    lab.fault(provider="fcm", tokens=[gone], error="unregistered")
    r = await _push(
        gateway, {"notifications": [{"tokens": [gone], "platform": 2, "message": "s"}], "sync": True}
    )
    assert [(e["token"], e["type"]) for e in r.json()["logs"]] == [(gone, "failed-push")], r.text
    # Another key of the app works (a publish-only key may push but not read the stats).
    made = await gateway.client.post("/v1/keys", json={"name": "publisher", "scopes": ["publish"]})
    assert made.status_code in (200, 201), made.text
    publisher = made.json()["secret"]
    r = await _push(gateway, body, headers={"Authorization": f"Bearer {publisher}"})
    assert r.status_code == 200, r.text
    async with httpx.AsyncClient(base_url=gateway.url) as c:  # a publish-only key may not read
        r = await c.get("/api/stat/app", headers={"Authorization": f"Bearer {publisher}"})
    assert r.status_code == 403 and r.json()["code"] == 403
    other, other_key = await gateway.app.state.services.apps.create("other-app")
    r = await _push(gateway, body, headers={"Authorization": f"Bearer {other_key}"})
    assert r.status_code == 403 and "[compat.gorush] serves app 'default'" in r.json()["message"], r.text
    assert other.name == "other-app"


#: (body, words gorush's 400 message holds) for every refusal of ``POST /api/push``.
BAD_INPUT: list[tuple[Any, str]] = [
    ({}, "Missing notifications field."),
    ({"notifications": None}, "Missing notifications field."),
    ("not an object", "Missing notifications field."),
    ({"notifications": []}, "Notifications field is empty."),
    ({"notifications": [{"tokens": ["a"], "platform": 9, "message": "x"}]}, "platform"),
    ({"notifications": [{"tokens": ["a"], "message": "x"}]}, "platform"),
    ({"notifications": [{"tokens": [], "platform": 2, "message": "x"}]}, "tokens must not be nil"),
    ({"notifications": [{"platform": 1, "message": "x"}]}, "tokens must not be nil"),
    ({"notifications": [{"tokens": [""], "platform": 1, "message": "x"}]}, "must not be empty"),
    ({"notifications": [{"tokens": "abc", "platform": 2}]}, "notifications[0].tokens"),
    ({"notifications": [{"tokens": ["a"], "platform": "2"}]}, "notifications[0].platform"),
    ({"notifications": [{"tokens": ["a"], "platform": 2, "badge": "1"}]}, "badge"),
    ({"notifications": [{"tokens": ["a"], "platform": 2, "data": []}]}, "data"),
    ({"notifications": [{"tokens": ["a"], "platform": 2, "priority": "urgent"}]}, "priority"),
    (
        {"notifications": [{"tokens": ["a"], "platform": 3, "app_id": "1", "app_secret": "s"}]},
        "app_id",
    ),
    ({"notifications": [{"tokens": ["x"] * 501, "platform": 2}]}, "more than 500"),
    (
        {"notifications": [{"tokens": ["a"], "platform": 1}] * 101},
        "Number of notifications(101) over limit(100)",
    ),
    ({"notifications": [{"tokens": ["a"], "platform": 1, "badge": -1, "message": "m"}]}, "badge"),
    ({"notifications": [{"tokens": [1, 2], "platform": 2}]}, "notifications[0].tokens"),
    ({"notifications": [{"tokens": ["a"], "platform": 1, "sound": 5}]}, "sound"),
    ({"notifications": [{"tokens": ["a"], "platform": 1, "alert": "hi"}]}, "alert"),
    ({"notifications": [{"tokens": ["a"], "platform": 1, "content_available": "yes"}]}, "content_available"),
    ({"notifications": [{"platform": 1, "topic": "com.app", "message": "x"}]}, "tokens must not be nil"),
    ({"notifications": [{"platform": 2, "topic": "bad topic!", "message": "x"}]}, "topic"),
    ({"notifications": [{"tokens": ["a"], "platform": 2, "time_to_live": 99999999}]}, "ttl_seconds"),
    ({"notifications": [{"tokens": ["a"], "platform": 1, "interruption_level": "loud"}]}, "interruption"),
    ({"notifications": [{"tokens": ["ab" * 32], "platform": 1, "message": "m"}, 7]}, "notifications[1]"),
]


async def test_bad_input_is_gorush_400(open_gateway: Gateway, lab: Lab) -> None:
    for body, message in BAD_INPUT:
        r = await _push(open_gateway, body, headers={})
        assert r.status_code == 400, (body, r.text)
        got = r.json()
        assert set(got) == {"code", "message"} and got["code"] == 400, got
        assert message in got["message"], (body, got)
    # Nothing of a refused request was admitted, and nothing reached a provider.
    assert (await open_gateway.client.get("/v1/publishes")).json()["items"] == []
    assert lab.ledger()["total"] == 0


async def test_malformed_json_and_a_refused_item_send_nothing(open_gateway: Gateway, lab: Lab) -> None:
    async with httpx.AsyncClient(base_url=open_gateway.url) as c:
        r = await c.post(
            "/api/push", content=b'{"notifications": [', headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400 and r.json() == {"code": 400, "message": "Missing notifications field."}
    # The second item is invalid natively (an APNs token that is not hex): the first is not sent.
    r = await _push(
        open_gateway,
        {
            "notifications": [
                {"tokens": [fcm_token()], "platform": 2, "message": "ok"},
                {"tokens": ["not-hex!"], "platform": 1, "message": "bad"},
            ]
        },
        headers={},
    )
    assert r.status_code == 400 and r.json()["message"].startswith("notifications[1]"), r.text
    # So is one with nothing to send (no message, title, data or native payload).
    r = await _push(
        open_gateway,
        {
            "notifications": [
                {"tokens": [fcm_token()], "platform": 2, "message": "ok"},
                {"tokens": [_hms_token()], "platform": 3},
            ]
        },
        headers={},
    )
    assert r.status_code == 400 and r.json()["message"].startswith("notifications[1]: notification"), r.text
    assert (await open_gateway.client.get("/v1/publishes")).json()["items"] == []
    assert lab.ledger()["total"] == 0


#: Values of every JSON type, with the edges that break parsers and databases.
_ODD_VALUES: list[Any] = [
    None, True, 0, -1, 2**31, 2**63, 1.5, "", "x", "\x00nul", "é" * 300, "a" * 5000,
    [], [1], ["a", None], {}, {"k": 1}, {"aps": {"alert": 1}}, [[[]]],
]  # fmt: skip
_FIELDS = [
    "tokens", "platform", "message", "title", "topic", "data", "priority", "sound", "badge",
    "mutable_content", "content_available", "image", "notif_id", "to", "condition", "alert",
    "thread-id", "category", "collapse_id", "collapse_key", "time_to_live", "expiration",
    "push_type", "interruption_level", "android", "notification", "apns", "webpush",
    "fcm_options", "huawei_notification", "huawei_data", "huawei_ttl", "huawei_collapse_key",
    "bi_tag", "fast_app_target", "content-state", "relevance-score", "url-args", "name", "volume",
    "dry_run", "retry", "production", "unknown_field",
]  # fmt: skip


def _fuzz_body(rng: random.Random) -> Any:
    platform = rng.choice([1, 2, 3])
    token = {1: _apns_token, 2: fcm_token, 3: _hms_token}[platform]()
    item: dict[str, Any] = {"tokens": [token], "platform": platform, "message": "fuzz"}
    for name in rng.sample(_FIELDS, rng.choice([0, 1, 1, 2, 3])):
        item[name] = rng.choice(_ODD_VALUES)
    if rng.random() < 0.1:
        return rng.choice(_ODD_VALUES)
    return {"notifications": [item] * rng.randint(1, 2), "sync": False}


async def test_fuzzed_pushes_answer_200_or_gorush_400(open_gateway: Gateway) -> None:
    """Every field of a valid push given values of every type: never a 5xx, always a gorush
    shape (the compat routes are not in /openapi.json, so the schemathesis run skips them)."""
    rng = random.Random(1414)
    seen: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=open_gateway.url, timeout=60) as c:
        for _ in range(150):
            body = _fuzz_body(rng)
            r = await c.post("/api/push", json=body)
            assert r.status_code in (200, 400), (body, r.status_code, r.text)
            seen[r.status_code] += 1
            got = r.json()
            if r.status_code == 200:
                assert set(got) == {"success", "counts", "logs"} and got["success"] == "ok", got
            else:
                assert set(got) == {"code", "message"} and got["code"] == 400 and got["message"], got
    assert seen[200] >= 10 and seen[400] >= 10, seen  # both kinds were exercised


async def test_prefix_and_disabled(database_url: str, lab: Lab) -> None:
    body = {"notifications": [{"tokens": [fcm_token()], "platform": 2, "message": "p"}]}
    settings = gateway_settings(
        database_url, lab, PUSHGATE_COMPAT_GORUSH_PREFIX="/gorush", PUSHGATE_COMPAT_GORUSH_REQUIRE_KEY="false"
    )
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        r = await c.post("/gorush/api/push", json=body)
        assert r.json() == {"success": "ok", "counts": 1, "logs": []}, r.text
        assert (await c.get("/gorush/api/stat/go")).status_code == 200
        # Not gorush's any more: Centrifugo's /api/{method} asks for its key (or nothing answers).
        assert (await c.post("/api/push", json=body)).status_code in (401, 404, 405)
    settings = gateway_settings(database_url, lab, PUSHGATE_COMPAT_GORUSH_ENABLED="false")
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as c:
        assert (await c.post("/api/push", json=body, headers=_bearer(gw))).status_code in (401, 404, 405)
        assert (await c.get("/api/stat/app", headers=_bearer(gw))).status_code == 404
