"""HTTP promises that a mutation pass found unguarded (issue 8, item 5), asserted over real HTTP.

Each test here was written against a mutant that the rest of the suite let live: the header or
the check it names was removed from the gateway and every other test still passed.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab


async def _fcm_device(client: httpx.AsyncClient, channel: str) -> dict[str, Any]:
    """Register one FCM device in ``channel`` through the API."""
    token = "fcm_" + secrets.token_urlsafe(40)
    r = await client.post(
        "/v1/devices", json={"provider": "fcm", "token": token, "platform": "android", "channels": [channel]}
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["device"])


def _campaign(channel: str, key: str) -> dict[str, Any]:
    return {
        "recipients": [{"type": "channel", "channel": channel}],
        "notification": {"title": "Sale"},
        "idempotency_key": key,
    }


async def test_unauthenticated_requests_are_told_the_scheme(gateway: Gateway) -> None:
    """RFC 9110 §11.6.1: a 401 carries ``WWW-Authenticate`` so a client knows to send a bearer
    key, both when no key is sent and when the key is unknown (two separate refusals)."""
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        missing = await anon.get("/v1/devices")
        wrong = await anon.get("/v1/devices", headers={"Authorization": "Bearer not-a-key-of-any-app"})
    for r in (missing, wrong):
        assert r.status_code == 401
        assert r.headers.get("WWW-Authenticate") == "Bearer"


async def test_every_response_carries_a_request_id(gateway: Gateway) -> None:
    """``X-Request-Id`` ties a client's report to the server's log line: present on successes,
    errors and unauthenticated health checks alike, and different for each request."""
    ok = await gateway.client.get("/v1/devices")
    missing = await gateway.client.get("/v1/publishes/pub_nope")
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        health = await anon.get("/healthz")
    assert (ok.status_code, missing.status_code, health.status_code) == (200, 404, 200)
    ids = [r.headers.get("X-Request-Id") for r in (ok, missing, health)]
    assert all(ids), ids
    assert len(set(ids)) == 3


async def test_replayed_publish_is_marked_and_a_new_one_is_not(gateway: Gateway) -> None:
    """A publish answered from its idempotency key says so (``Idempotent-Replayed: true``), so a
    client can tell "accepted now" from "already accepted"; a first admission has no such header."""
    await _fcm_device(gateway.client, "promo")
    first = await gateway.client.post("/v1/publish", json=_campaign("promo", "black-friday"))
    again = await gateway.client.post("/v1/publish", json=_campaign("promo", "black-friday"))
    other = await gateway.client.post("/v1/publish", json=_campaign("promo", "cyber-monday"))
    assert first.status_code == again.status_code == other.status_code == 202
    assert again.json()["publish_id"] == first.json()["publish_id"]
    assert other.json()["publish_id"] != first.json()["publish_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert "Idempotent-Replayed" not in other.headers


async def test_idempotency_key_is_reusable_after_its_window(database_url: str, lab: Lab) -> None:
    """``limits.idempotency_window_hours``: a key only deduplicates inside its window. After it a
    request with the same key is a new publish (sent again), and the key now names that one."""
    lab.reset()
    window_hours = 1.0 / 3600  # one second
    settings = gateway_settings(database_url, lab, PUSHGATE_LIMITS_IDEMPOTENCY_WINDOW_HOURS=str(window_hours))
    async with running_gateway(settings) as gw:
        dev = await _fcm_device(gw.client, "daily")
        first = await gw.client.post("/v1/publish", json=_campaign("daily", "digest"))
        inside = await gw.client.post("/v1/publish", json=_campaign("daily", "digest"))
        assert inside.json()["publish_id"] == first.json()["publish_id"]
        await gw.wait_done(first.json()["publish_id"])
        await asyncio.sleep(1.2)  # past the window
        later = await gw.client.post("/v1/publish", json=_campaign("daily", "digest"))
        assert later.status_code == 202
        assert later.json()["publish_id"] != first.json()["publish_id"]
        assert "Idempotent-Replayed" not in later.headers
        done = await gw.wait_done(later.json()["publish_id"])
        assert done["counts"]["sent"] == 1
        assert lab.ledger("fcm", token=dev["token"])["total"] == 2
        # Inside the new window the key answers with the new publish.
        again = await gw.client.post("/v1/publish", json=_campaign("daily", "digest"))
        assert again.json()["publish_id"] == later.json()["publish_id"]
        listed = (await gw.client.get("/v1/publishes")).json()["items"]
        assert len(listed) == 2


async def test_readyz_refuses_when_the_workers_are_stopped(gateway: Gateway) -> None:
    """A load balancer must stop routing to an instance whose workers are gone: 503 with the
    failing check named, while ``/healthz`` (liveness) still answers."""
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        before = await anon.get("/readyz")
        assert before.status_code == 200 and before.json()["status"] == "ready"
        await gateway.app.state.services.engine.stop(grace=1.0)
        after = await anon.get("/readyz")
        alive = await anon.get("/healthz")
    assert after.status_code == 503
    error = after.json()["error"]
    assert error["code"] == "not_ready"
    assert error["details"]["workers"] == "stopped" and error["details"]["database"] == "ok"
    assert "workers stopped" in error["message"]
    assert alive.status_code == 200
