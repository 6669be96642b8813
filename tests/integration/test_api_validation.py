"""Bad input gets the documented JSON error and status, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from support.gateway import Gateway
from support.lab import Lab


def assert_error(
    r: httpx.Response, status: int, code: str | None = None, contains: str | None = None
) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    if contains:
        assert contains in body["error"]["message"], body


async def nothing_stored(gw: Gateway) -> None:
    assert (await gw.client.get("/v1/devices")).json()["items"] == []
    assert (await gw.client.get("/v1/publishes")).json()["items"] == []
    assert (await gw.client.get("/v1/channels")).json()["items"] == []


async def test_authentication_required(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        for method, path in [
            ("GET", "/v1/devices"),
            ("POST", "/v1/devices"),
            ("POST", "/v1/publish"),
            ("GET", "/v1/publishes/pub_x"),
            ("GET", "/v1/channels"),
        ]:
            assert_error(await anon.request(method, path, json={}), 401, "unauthorized")
            r = await anon.request(method, path, json={}, headers={"Authorization": "Bearer wrong"})
            assert_error(r, 401, "unauthorized")
            r = await anon.request(method, path, headers={"Authorization": f"Basic {gateway.key}"})
            assert_error(r, 401, "unauthorized")
        # Health checks stay open.
        assert (await anon.get("/healthz")).json() == {"status": "ok"}
        ready = await anon.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "workers": "running"}


BAD_DEVICES: list[tuple[Any, str]] = [
    ("{not json", "malformed"),
    ([], "array"),
    ({"provider": "fcm", "platform": "android"}, "token"),
    ({"provider": "fcm", "token": 12, "platform": "android"}, "token"),
    ({"provider": "nope", "token": "t" * 20, "platform": "android"}, "provider"),
    ({"provider": "fcm", "token": "t" * 20, "platform": "toaster"}, "platform"),
    ({"provider": "apns", "token": "t" * 20, "platform": "android"}, "platform"),
    ({"provider": "fcm", "token": "t" * 20, "platform": "android", "colour": "red"}, "colour"),
    ({"provider": "fcm", "token": "t" * 20, "platform": "android", "channels": ["bad channel"]}, "channel"),
    ({"provider": "fcm", "token": "t" * 20, "platform": "android", "channels": ["x" * 201]}, "channels"),
    # A "$"-anchored pattern let a trailing newline through; names are matched whole.
    ({"provider": "fcm", "token": "t" * 20, "platform": "android", "channels": ["news\n"]}, "channel"),
    ({"provider": "fcm", "token": "t" * 20, "platform": "android", "timezone": "Mars/Olympus"}, "timezone"),
    ({"provider": "fcm", "token": "t" * 20, "platform": "android", "meta": {"a": 1}}, "meta"),
    ({"provider": "fcm", "token": "t" * 20, "platform": "android", "tags": "x"}, "tags"),
    ({"provider": "fcm", "token": "t" * 5000, "platform": "android"}, "token"),
    ({"provider": "fcm", "token": "t" * 20, "platform": "android", "id": "dev_missing"}, "dev_missing"),
    ({"provider": "webpush", "token": {"endpoint": "https://push.example.com/x"}, "platform": "web"}, "keys"),
    ({"provider": "webpush", "token": "not a subscription", "platform": "web"}, "subscription"),
    (
        {
            "provider": "webpush",
            "token": {"endpoint": "https://push.example.com/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}},
            "platform": "web",
        },
        "p256dh",
    ),
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bad_device_registrations(gateway: Gateway) -> None:
    for body, hint in BAD_DEVICES:
        content = body if isinstance(body, str) else json.dumps(body)
        r = await gateway.client.post(
            "/v1/devices", content=content, headers={"Content-Type": "application/json"}
        )
        expected = 404 if hint == "dev_missing" else 400
        assert_error(r, expected)
        assert hint.lower() in r.text.lower(), (body, r.text)
    await nothing_stored(gateway)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_unknown_provider_is_blamed_on_the_provider_field(gateway: Gateway) -> None:
    """The provider is a plain string in the schema (the registry decides), so the route must
    still name ``provider`` as the bad field, in the single and in the batch route."""
    body = {"provider": "bogus", "token": "t" * 20, "platform": "android"}
    r = await gateway.client.post("/v1/devices", json=body)
    assert_error(r, 400, "invalid_request")
    assert r.json()["error"]["message"].startswith("provider: unknown provider 'bogus'"), r.text
    ok = {"provider": "fcm", "token": "u" * 20, "platform": "android"}
    r = await gateway.client.post("/v1/devices/batch", json={"devices": [ok, body]})
    assert_error(r, 400)
    keys = [d["key"] for d in r.json()["error"]["details"]]
    assert keys == ["devices[1].provider"], r.text
    await nothing_stored(gateway)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_topic_name_with_a_trailing_newline_is_refused(gateway: Gateway) -> None:
    body = {"recipients": [{"type": "fcm_topic", "topic": "news\n"}], "notification": {"title": "x"}}
    assert_error(await gateway.client.post("/v1/publish", json=body), 400, "invalid_request", "topic")


async def test_webpush_endpoint_must_be_public_https(gateway: Gateway, lab: Lab) -> None:
    """The lab snippet allows loopback endpoints; a gateway without it refuses them."""
    from support.gateway import gateway_settings, running_gateway

    settings = gateway_settings(
        gateway.settings.database_url, lab, PUSHGATE_DEVICES_ALLOW_LOOPBACK_ENDPOINTS="false"
    )
    async with running_gateway(settings) as strict:
        r = await strict.client.post(
            "/v1/devices", json={"provider": "webpush", "token": lab.subscription(), "platform": "web"}
        )
        assert_error(r, 400, "invalid_request", "https")
        await nothing_stored(strict)


async def test_bad_publishes(gateway: Gateway, lab: Lab) -> None:
    dev = (
        await gateway.client.post(
            "/v1/devices", json={"provider": "fcm", "token": "tok_" + "a" * 30, "platform": "android"}
        )
    ).json()["device"]
    await gateway.client.delete(f"/v1/devices/{dev['id']}")
    ok_recipients = [{"type": "channel", "channel": "orders"}]
    cases: list[tuple[Any, int, str]] = [
        ("{", 400, "invalid_request"),
        ({"recipients": []}, 400, "invalid_request"),
        (
            {"recipients": [{"type": "planet", "name": "x"}], "notification": {"title": "t"}},
            400,
            "invalid_request",
        ),
        (
            {"recipients": [{"type": "channel", "channel": "a b"}], "notification": {"title": "t"}},
            400,
            "invalid_request",
        ),
        ({"recipients": ok_recipients, "notification": {"title": 5}}, 400, "invalid_request"),
        (
            {"recipients": ok_recipients, "notification": {"title": "t", "sparkles": True}},
            400,
            "invalid_request",
        ),
        (
            {"recipients": ok_recipients, "notification": {"title": "t", "priority": "urgent"}},
            400,
            "invalid_request",
        ),
        (
            {"recipients": ok_recipients, "notification": {"title": "t", "data": {"k": 1}}},
            400,
            "invalid_request",
        ),
        (
            {"recipients": ok_recipients, "notification": {"title": "t", "data": {"from": "x"}}},
            400,
            "invalid_request",
        ),
        ({"recipients": ok_recipients, "notification": {}}, 400, "invalid_request"),
        (
            {"recipients": ok_recipients, "notification": {"title": "t"}, "expire_at": "yesterday"},
            400,
            "invalid_request",
        ),
        (
            {
                "recipients": ok_recipients,
                "notification": {"title": "t"},
                "expire_at": "2001-01-01T00:00:00Z",
            },
            400,
            "invalid_request",
        ),
        (
            {
                "recipients": [{"type": "token", "provider": "webpush", "token": {"endpoint": "x"}}],
                "notification": {"title": "t"},
            },
            400,
            "invalid_request",
        ),
        (
            {
                # APNs is deliverable now: a malformed APNs token is what admission refuses
                "recipients": [{"type": "token", "provider": "apns", "token": "not-a-hex-token"}],
                "notification": {"title": "t"},
            },
            400,
            "invalid_request",
        ),
        (
            {"recipients": [{"type": "channel", "channel": "c"}] * 1001, "notification": {"title": "t"}},
            400,
            "invalid_request",
        ),
        (
            {
                "recipients": ok_recipients,
                "notification": {"title": "t", "body": "x" * 4000, "data": {"k": "y" * 2000}},
            },
            400,
            "payload_too_large",
        ),
    ]
    for body, status, code in cases:
        content = body if isinstance(body, str) else json.dumps(body)
        r = await gateway.client.post(
            "/v1/publish", content=content, headers={"Content-Type": "application/json"}
        )
        assert_error(r, status, code)
    r = await gateway.client.post(
        "/v1/publish",
        json={
            "recipients": ok_recipients,
            "notification": {"title": "t", "body": "x" * 4000, "data": {"k": "y" * 2000}},
        },
    )
    details = r.json()["error"]["details"]
    assert details["provider"] in ("fcm", "webpush", "apns", "hms", "wns", "mipush")
    assert details["size"] > details["limit"]
    assert details["provider"] in r.json()["error"]["message"]
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []


async def test_unstorable_input_is_400(gateway: Gateway) -> None:
    """NUL characters (PostgreSQL text refuses them), bodies that aren't UTF-8 or nest too deeply."""
    fcm = {"provider": "fcm", "token": "t" * 20, "platform": "android"}
    publish = {"recipients": [{"type": "user", "user": "u"}], "notification": {"title": "t"}}
    cases: list[tuple[str, str, bytes | None]] = [
        ("GET", "/v1/devices/dev%00x", None),
        ("GET", "/v1/devices?users=a%00", None),
        ("GET", "/v1/publishes?cursor=a%00", None),
        ("POST", "/v1/devices", json.dumps({**fcm, "user": "a\x00"}).encode()),
        ("POST", "/v1/devices", json.dumps({**fcm, "tags": {"k" * 201: "v"}}).encode()),
        ("POST", "/v1/devices", b'{"provider": "fcm", "token": "\xff\xfe", "platform": "android"}'),
        ("POST", "/v1/devices", b"[" * 100_000 + b"]" * 100_000),
        ("POST", "/v1/publish", json.dumps({**publish, "idempotency_key": "k\x00"}).encode()),
    ]
    for method, path, body in cases:
        r = await gateway.client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
        assert_error(r, 400, "invalid_request")
    await nothing_stored(gateway)
    # An escaped backslash before u0000 is literal text, not a NUL.
    r = await gateway.client.post("/v1/devices", json={**fcm, "meta": {"k": "\\u0000"}})
    assert r.status_code == 200 and r.json()["device"]["meta"] == {"k": "\\u0000"}, r.text


async def test_oversized_body_is_413(gateway: Gateway) -> None:
    big = json.dumps(
        {"provider": "fcm", "token": "t" * 20, "platform": "android", "meta": {"k": "v" * 2_000_000}}
    )
    r = await gateway.client.post("/v1/devices", content=big, headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    assert (await gateway.client.get("/v1/devices")).json()["items"] == []


async def test_not_found_and_bad_paths(gateway: Gateway) -> None:
    assert_error(await gateway.client.get("/v1/devices/dev_nope"), 404, "not_found", "dev_nope")
    assert_error(await gateway.client.patch("/v1/devices/dev_nope", json={"user": "u"}), 404, "not_found")
    assert_error(await gateway.client.delete("/v1/devices/dev_nope"), 404, "not_found")
    assert_error(await gateway.client.put("/v1/devices/dev_nope/channels/news"), 404, "not_found")
    assert_error(await gateway.client.get("/v1/publishes/pub_nope"), 404, "not_found")
    assert_error(await gateway.client.get("/v1/publishes/pub_nope/deliveries"), 404, "not_found")
    assert_error(await gateway.client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(await gateway.client.put("/v1/publish"), 405, "method_not_allowed")
    assert_error(await gateway.client.get("/v1/devices", params={"limit": 0}), 400)
    assert_error(await gateway.client.get("/v1/devices", params={"limit": "many"}), 400)
    assert_error(await gateway.client.get("/v1/devices", params={"include": "secrets"}), 400)
    assert_error(await gateway.client.get("/v1/devices", params={"status": "zombie"}), 400)
    assert_error(await gateway.client.get("/v1/channels/bad%20name/devices"), 400)
    assert_error(await gateway.client.post("/v1/devices/update", json={"ids": ["x"]}), 400, "invalid_request")
    assert_error(
        await gateway.client.post("/v1/devices/update", json={"user_update": {"user": "u"}}),
        400,
        "invalid_request",
    )
    assert_error(await gateway.client.post("/v1/devices/remove", json={}), 400, "invalid_request")
    assert_error(
        await gateway.client.post("/v1/users/u1/channels", json={"op": "add", "channels": ["no spaces"]}), 400
    )
    assert_error(
        await gateway.client.post("/v1/users/u1/channels", json={"op": "merge", "channels": ["a"]}), 400
    )
    assert_error(await gateway.client.get("/v1/user-channels", params={"cursor": "garbage"}), 400)
    await nothing_stored(gateway)
    assert (await gateway.client.get("/v1/user-channels")).json()["items"] == []


async def test_openapi_document(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        doc = (await anon.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/v1/devices",
        "/v1/devices/{device_id}",
        "/v1/devices/update",
        "/v1/devices/remove",
        "/v1/devices/{device_id}/channels/{channel}",
        "/v1/channels",
        "/v1/channels/{channel}/devices",
        "/v1/users/{user}/channels",
        "/v1/user-channels",
        "/v1/publish",
        "/v1/publishes",
        "/v1/publishes/{publish_id}",
        "/v1/publishes/{publish_id}/deliveries",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    assert "bearer" in doc["components"]["securitySchemes"]
    device_in = doc["components"]["schemas"]["DeviceIn"]["properties"]["provider"]
    assert device_in["enum"] == ["fcm", "webpush", "hms", "wns", "apns", "mipush"], device_in


async def test_tag_values_fit_their_column(gateway: Gateway) -> None:
    body = {"provider": "fcm", "token": "q" * 24, "platform": "android"}
    r = await gateway.client.post("/v1/devices", json={**body, "tags": {"k": "v" * 501}})
    assert_error(r, 400, "invalid_request")
    r = await gateway.client.post("/v1/devices", json={**body, "tags": {"k": "v" * 500}})
    assert r.status_code == 200 and r.json()["device"]["tags"] == {"k": "v" * 500}


async def test_json_types_are_strict(gateway: Gateway) -> None:
    """What the OpenAPI document calls invalid is refused: no 0-for-false, no "3"-for-3."""
    base = {"recipients": [{"type": "fcm_topic", "topic": "x"}]}
    for notification, field in [
        ({"title": "t", "mutable_content": 0}, "notification.mutable_content"),
        ({"title": "t", "badge": "3"}, "notification.badge"),
        ({"title": 7}, "notification.title"),
    ]:
        r = await gateway.client.post("/v1/publish", json={**base, "notification": notification})
        assert_error(r, 400, "invalid_request", field)
    r = await gateway.client.post(
        "/v1/devices", json={"provider": "fcm", "token": "t" * 20, "platform": "android", "meta": {"a": 1}}
    )
    assert_error(r, 400, "invalid_request", "meta")
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []
