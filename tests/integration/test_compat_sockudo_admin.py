"""Sockudo front-end: credentials, templates, dead letters (+ replay) and the routes pushgate
answers with Sockudo's "not implemented", each on its native counterpart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import fcm_token
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab, service_account
from support.sockudo import SockudoKey, call, new_key
from support.wait import wait_for

from pushgate.store.schema import deliveries, publish_stats


async def _env(gw: Gateway) -> tuple[Gateway, SockudoKey]:
    return gw, await new_key(gw.client)


@pytest.fixture
async def env(database_url: str, lab: Lab) -> AsyncIterator[tuple[Gateway, SockudoKey]]:
    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_SECRET_KEY=MASTER, PUSHGATE_RETRY_MAX_ATTEMPTS="2"
    )
    async with running_gateway(settings) as gw:
        yield await _env(gw)


async def register(gw: Gateway, key: SockudoKey, device_id: str, channel: str) -> str:
    token = fcm_token()
    d: dict[str, Any] = {"id": device_id, "platform": "android", "formFactor": "phone", "timezone": "UTC"}
    d |= {"locale": "en", "push": {"recipient": {"transportType": "gcm", "registrationToken": token}}}
    assert (await call(gw.client, key, "POST", "/deviceRegistrations", d)).status_code == 201
    sub = {"channel": channel, "deviceId": device_id}
    assert (await call(gw.client, key, "POST", "/channelSubscriptions", sub)).status_code == 201
    return token


async def test_credentials_upload_is_the_native_one(env: tuple[Gateway, SockudoKey], lab: Lab) -> None:
    gw, key = env
    sa_json = service_account(lab)
    r = await call(gw.client, key, "POST", "/credentials/fcm", {"serviceAccountJson": sa_json})
    assert r.status_code == 201, r.text
    assert r.json()["provider"] == "fcm" and r.json()["version"] == 1 and r.json()["app_id"] == key.app_id
    assert sa_json["private_key"] not in r.text
    native = (await gw.client.get("/v1/credentials")).json()["items"]
    assert [(c["provider"], c["source"]) for c in native if c["provider"] == "fcm"] == [("fcm", "api")]
    listed = await call(gw.client, key, "GET", "/credentials")
    assert [c["provider"] for c in listed.json()["items"]] == ["fcm"]
    r = await call(gw.client, key, "POST", "/credentials/fcm", {"serviceAccountJson": "{not json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_input"
    r = await call(gw.client, key, "POST", "/credentials/pigeon", {})
    assert r.status_code == 400 and r.json()["code"] == "invalid_input"
    r = await call(gw.client, key, "POST", "/credentials/apns", {"p12": "MIIx", "p12Password": "x"})
    assert r.status_code == 501 and r.json()["code"] == "not_implemented"
    r = await call(gw.client, key, "POST", "/credentials/hms", {"hmsAppId": "1"})
    assert r.status_code == 400 and "clientSecret" in r.json()["error"]


async def test_templates_render_a_publish(env: tuple[Gateway, SockudoKey], lab: Lab) -> None:
    gw, key = env
    token = await register(gw, key, "tpl-dev", "tpl")
    tpl = {
        "templateId": "order-packed",
        "defaultLocale": "en",
        "locales": {
            "en": {"title": "Order {{ data.order }}", "body": "packed"},
            "de": {"title": "Bestellung"},
        },
    }
    r = await call(gw.client, key, "POST", "/templates", tpl)
    assert r.status_code == 201, r.text
    assert (
        r.json()["templateId"] == "order-packed"
        and r.json()["locales"]["en"]["title"] == "Order {{ data.order }}"
    )
    assert (await gw.client.get("/v1/templates/order-packed")).json()["version"] == 1
    # POST again: a new version (Sockudo's upsert).
    tpl["locales"]["en"]["body"] = "packed!"  # type: ignore[index]
    assert (await call(gw.client, key, "POST", "/templates", tpl)).status_code == 201
    assert (await gw.client.get("/v1/templates/order-packed")).json()["version"] == 2
    got = await call(gw.client, key, "GET", "/templates/order-packed")
    assert got.json()["locales"]["en"]["body"] == "packed!"
    assert [t["templateId"] for t in (await call(gw.client, key, "GET", "/templates")).json()["items"]] == [
        "order-packed"
    ]
    body = {
        "recipients": [{"type": "channel", "channel": "tpl"}],
        "payload": {"templateId": "order-packed", "templateData": {"order": "ord_9"}},
    }
    assert (await call(gw.client, key, "POST", "/publish", body)).status_code == 202

    async def sent() -> str | None:
        items = lab.ledger("fcm", token)["items"]
        return str(items[0]) if items else None

    assert "Order ord_9" in await wait_for(sent, 30, "the templated publish")
    bad = {**tpl, "locales": {"en": {"title": "{{ unclosed"}}}
    r = await call(gw.client, key, "POST", "/templates", bad)
    assert r.status_code == 400 and r.json()["code"] == "invalid_input"
    r = await call(gw.client, key, "POST", "/templates", {**tpl, "defaultLocale": "fr"})
    assert r.status_code == 400
    assert (await call(gw.client, key, "DELETE", "/templates/order-packed")).status_code == 204
    assert (await call(gw.client, key, "GET", "/templates/order-packed")).status_code == 404
    assert (await call(gw.client, key, "DELETE", "/templates/order-packed")).status_code == 404


async def test_dead_letters_and_replay(env: tuple[Gateway, SockudoKey], lab: Lab) -> None:
    gw, key = env
    down = await register(gw, key, "dl-down", "dl")
    await register(gw, key, "dl-up", "dl")
    lab.fault(provider="fcm", tokens=[down], error="503")
    body = {
        "publishId": "dl-pub",
        "recipients": [{"type": "channel", "channel": "dl"}],
        "payload": {"title": "x"},
    }
    assert (await call(gw.client, key, "POST", "/publish", body)).status_code == 202

    async def final() -> dict[str, Any] | None:
        s = (await call(gw.client, key, "GET", "/publish/dl-pub/status")).json()
        return s if s["state"] not in ("accepted", "dispatching") else None

    status = await wait_for(final, 30, "the publish to finish")
    assert status["state"] == "partially_succeeded"
    assert (status["counters"]["succeeded"], status["counters"]["failed"]) == (1, 1)
    r = await call(gw.client, key, "GET", "/deadLetters", params={"provider": "fcm"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 1 and items[0]["provider"] == "fcm" and items[0]["replayable"]
    assert (await call(gw.client, key, "GET", "/deadLetters", params={"provider": "apns"})).json()[
        "items"
    ] == []
    assert (await call(gw.client, key, "GET", "/deadLetters", params={"sinceMs": "1"})).json()[
        "items"
    ] == items
    assert (await call(gw.client, key, "GET", "/deadLetters", params={"untilMs": "1"})).json()["items"] == []
    lab.reset()
    r = await call(gw.client, key, "POST", f"/deadLetters/{items[0]['deadLetterId']}/replay")
    assert r.status_code == 202, r.text
    await wait_for(lambda: _total(lab, down), 30, "the replayed delivery")
    r = await call(gw.client, key, "POST", "/deadLetters/bm9wZQ/replay")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await call(gw.client, key, "GET", "/deadLetters", params={"sinceMs": "yesterday"})
    assert r.status_code == 400


async def _total(lab: Lab, token: str) -> int | None:
    return int(lab.ledger("fcm", token)["total"]) or None


async def test_delivery_status_records_a_delivered_receipt(env: tuple[Gateway, SockudoKey], lab: Lab) -> None:
    gw, key = env
    token = await register(gw, key, "rc-dev", "rc")
    body = {
        "publishId": "rc-pub",
        "recipients": [{"type": "device", "device_id": "rc-dev"}],
        "payload": {"title": "x"},
    }
    assert (await call(gw.client, key, "POST", "/publish", body)).status_code == 202
    await wait_for(lambda: _total(lab, token), 30, "the delivery")
    at_ms = int(time.time() * 1000)  # after the publish: an earlier time is a 400, as on /v1/receipts
    event: dict[str, Any] = {
        "appId": key.app_id,
        "publishId": "rc-pub",
        "eventId": "ev-1",
        "occurredAtMs": at_ms,
        "result": {
            "provider": "fcm",
            "batchId": "b",
            "deviceId": "rc-dev",
            "outcome": "accepted",
            "attempt": 1,
        },
    }
    r = await call(gw.client, key, "POST", "/deliveryStatus", event)
    assert r.status_code == 202, r.text
    assert r.json()["eventId"] == "ev-1" and r.json()["result"]["deviceId"] == "rc-dev"
    # Counted once, however often it is reported.
    assert (await call(gw.client, key, "POST", "/deliveryStatus", event)).status_code == 202
    services = gw.app.state.services
    pub = await services.publishes.get(key.app_id, "rc-pub")
    assert pub is not None
    async with services.db.read() as conn:
        counted = await conn.execute(
            sa.select(sa.func.sum(publish_stats.c.delivered)).where(publish_stats.c.publish_id == pub.id)
        )
        stamped = await conn.execute(
            sa.select(deliveries.c.delivered_at).where(deliveries.c.publish_id == pub.id)
        )
        assert counted.scalar() == 1 and stamped.scalar() == at_ms / 1000
    other = {**event, "result": {**event["result"], "deviceId": "ghost"}}
    r = await call(gw.client, key, "POST", "/deliveryStatus", other)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await call(gw.client, key, "POST", "/deliveryStatus", {**event, "publishId": "nope"})
    assert r.status_code == 404
    rejected = {**event, "result": {**event["result"], "outcome": "rejected"}}
    r = await call(gw.client, key, "POST", "/deliveryStatus", rejected)
    assert r.status_code == 501 and r.json()["code"] == "not_implemented"
    r = await call(gw.client, key, "POST", "/deliveryStatus", {"publishId": "rc-pub"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_input"
