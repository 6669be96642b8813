"""Admission of the publish's policy fields and of provider-native-only payloads (issue 11).

Admission refuses what the planner could not act on (400 naming the field) and stores the
rest, as given, under ``request["policy"]``: the planner applies it. A publish that gives only
some providers' native payloads is accepted; the providers that have a payload are recorded in
``request["payload_providers"]`` (the planner skips the other providers' devices).
"""

from __future__ import annotations

import secrets
from typing import Any

from support.api import fcm_token, register
from support.gateway import Gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.store.publishes import Publish

CHANNEL = [{"type": "channel", "channel": "policy"}]
NOTE = {"title": "t"}


async def stored(gw: Gateway, publish_id: str, app_name: str = "default") -> Publish:
    """The publish as the store holds it (the request is not exposed by the API)."""
    services = gw.app.state.services
    app = await services.apps.get_by_name(app_name)
    pub = await services.publishes.get(app.id, publish_id, with_counts=False)
    assert pub is not None
    return pub


def refused(r: Any, field: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(f"{field}:"), error


async def test_policy_fields_are_checked(gateway: Gateway) -> None:
    window = {"start": "09:00", "end": "21:00"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"deliver_between": window, "local_time": "09:00"}, "deliver_between"),
        ({"deliver_between": {"start": "09:00", "end": "09:00"}}, "deliver_between.end"),
        ({"deliver_between": {"start": "09:00", "end": "09:00:00"}}, "deliver_between.end"),
        ({"deliver_between": window, "no_timezone": "Mars/Olympus"}, "no_timezone"),
        ({"local_time": "08:30", "no_timezone": "../../etc/passwd"}, "no_timezone"),
        ({"local_time": "08:30", "no_timezone": "later"}, "no_timezone"),
        ({"no_timezone": "skip"}, "no_timezone"),
        ({"no_timezone": "Europe/Paris", "priority": "critical"}, "no_timezone"),
        ({"send_at": "next week"}, "send_at"),
        ({"send_at": "2030-01-01T09:00:00"}, "send_at"),  # no offset
        ({"send_at": "2030-01-01T09:00:00Z", "expire_at": "2030-01-01T08:00:00Z"}, "expire_at"),
        ({"send_at": "2030-01-01T09:00:00Z", "expire_at": "2030-01-01T09:00:00Z"}, "expire_at"),
    ]
    for extra, field in cases:
        refused(
            await gateway.client.post(
                "/v1/publish", json={"recipients": CHANNEL, "notification": NOTE, **extra}
            ),
            field,
        )
    # The batch route answers each item as the single route would.
    items = [{"recipients": CHANNEL, "notification": NOTE, **extra} for extra, _ in cases]
    r = await gateway.client.post("/v1/publish/batch", json={"publishes": items})
    assert r.status_code == 202 and r.json()["admitted"] == 0, r.text
    for item, (_, field) in zip(r.json()["items"], cases, strict=True):
        assert item["error"]["code"] == "invalid_request" and item["error"]["message"].startswith(f"{field}:")
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []


async def test_policy_fields_are_stored_for_the_planner(gateway: Gateway) -> None:
    r = await gateway.client.post("/v1/categories", json={"id": "marketing", "description": "offers"})
    assert r.status_code == 201, r.text
    cap = {"limit": 3, "window_seconds": 86400, "category": "marketing"}
    bodies: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
        ({}, None),
        (
            {
                "deliver_between": {"start": "21:00", "end": "07:30"},
                "no_timezone": "send_now",
                "category": "marketing",
            },
            {
                "deliver_between": {"start": "21:00", "end": "07:30"},
                "no_timezone": "send_now",
                "category": "marketing",
            },
        ),
        (
            {"local_time": "09:00", "no_timezone": "America/New_York"},
            {"local_time": "09:00", "no_timezone": "America/New_York"},
        ),
        (
            {"local_time": "09:00", "no_timezone": "skip", "priority": "normal"},
            {"local_time": "09:00", "no_timezone": "skip", "priority": "normal"},
        ),
        (
            {
                "priority": "critical",
                "frequency_caps": [
                    cap,
                    {"limit": 1, "window_seconds": 60, "per": "device", "action": "delay"},
                ],
            },
            {
                "priority": "critical",
                "frequency_caps": [
                    {
                        "limit": 3,
                        "window_seconds": 86400,
                        "per": "user",
                        "category": "marketing",
                        "action": "drop",
                    },
                    {"limit": 1, "window_seconds": 60, "per": "device", "category": None, "action": "delay"},
                ],
            },
        ),
        ({"frequency_caps": []}, {"frequency_caps": []}),  # no caps for this publish: said, so kept
    ]
    for extra, policy in bodies:
        r = await gateway.client.post(
            "/v1/publish", json={"recipients": CHANNEL, "notification": NOTE, **extra}
        )
        assert r.status_code == 202, (extra, r.text)
        request = (await stored(gateway, r.json()["publish_id"])).request
        assert request.get("policy") == policy, request
        assert "payload_providers" not in request
    # Batch items store the same.
    extra, policy = bodies[1]
    r = await gateway.client.post(
        "/v1/publish/batch", json={"publishes": [{"recipients": CHANNEL, "notification": NOTE, **extra}]}
    )
    assert r.status_code == 202 and r.json()["admitted"] == 1, r.text
    assert (await stored(gateway, r.json()["items"][0]["publish_id"])).request["policy"] == policy


async def test_native_only_payload_is_admitted_for_its_providers(gateway: Gateway, lab: Lab) -> None:
    """Acceptance 6, admission's part: only an FCM native payload, to a channel of FCM and APNs
    devices, is accepted (no 400 for APNs having nothing to render) and reaches the FCM
    devices; which providers have a payload is stored for the planner."""
    fcm = [fcm_token() for _ in range(2)]
    for t in fcm:
        await register(gateway, provider="fcm", token=t, platform="android", channels=["mixed"])
    for _ in range(2):
        await register(
            gateway, provider="apns", token=secrets.token_hex(32), platform="ios", channels=["mixed"]
        )
    native = {"message": {"notification": {"title": "native only"}}}
    body = {"recipients": [{"type": "channel", "channel": "mixed"}], "providers": {"fcm": native}}
    r = await gateway.client.post("/v1/publish", json=body)
    assert r.status_code == 202, r.text
    pid = r.json()["publish_id"]
    assert (await stored(gateway, pid)).request["payload_providers"] == ["fcm"]

    def fcm_arrivals() -> list[dict[str, Any]]:
        return [i for i in lab.ledger("fcm")["items"] if i["token"] in fcm]

    await wait_for(lambda: len(fcm_arrivals()) == 2, 20, "the FCM devices to be served")
    assert all(i["message"]["notification"]["title"] == "native only" for i in fcm_arrivals())
    assert lab.ledger("apns")["total"] == 0

    # A batch item: the same.
    r = await gateway.client.post("/v1/publish/batch", json={"publishes": [body]})
    assert r.status_code == 202 and r.json()["admitted"] == 1, r.text
    assert (await stored(gateway, r.json()["items"][0]["publish_id"])).request["payload_providers"] == ["fcm"]
    # Unified content: every provider has a payload, nothing is recorded.
    r = await gateway.client.post(
        "/v1/publish", json={"recipients": [{"type": "channel", "channel": "mixed"}], "notification": NOTE}
    )
    assert "payload_providers" not in (await stored(gateway, r.json()["publish_id"])).request


async def test_native_payloads_for_no_reachable_provider_are_refused(gateway: Gateway) -> None:
    """An app whose only reachable provider is APNs (a raw APNs token, no credentials) sending
    only an FCM payload: nothing it can reach has a payload, so it is still a 400."""
    _, key = await gateway.app.state.services.apps.create("no-credentials")
    body = {
        "recipients": [{"type": "token", "provider": "apns", "token": secrets.token_hex(32)}],
        "providers": {"fcm": {"message": {"notification": {"title": "x"}}}},
    }
    async with gateway.as_app(key) as app:
        refused(await app.post("/v1/publish", json=body), "notification")
        r = await app.post("/v1/publish/batch", json={"publishes": [body]})
        assert r.status_code == 202 and r.json()["rejected"] == 1, r.text
        assert r.json()["items"][0]["error"]["message"].startswith("notification:")
        # With a payload for the one provider it reaches, it goes as today: nothing recorded.
        ok = {**body, "providers": {"apns": {"payload": {"aps": {"alert": "x"}}}}}
        r = await app.post("/v1/publish", json=ok)
        assert r.status_code == 202, r.text
        assert (
            "payload_providers"
            not in (await stored(gateway, r.json()["publish_id"], "no-credentials")).request
        )
