"""Receipts (issue 13, acceptance 4) on both databases, through the provider lab: a device
registered with a client token gets a push, reads ``pushgate.d`` from the payload the lab
received and reports ``delivered`` then ``opened`` with its device token; the publish counts and
the delivery record show them, a repeat changes nothing, and the token reaches no other device's
delivery (nor the device list). Also: app-key receipts by ``(publish_id, device_id)`` (HMS
payloads carry only ``p``), campaign stats, 400s that record nothing, the ``receipt`` webhook."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from support.api import fcm_token, publish, register
from support.gateway import Gateway
from support.lab import Lab
from support.wait import wait_for
from test_webhooks import add_webhook, hooked_gateway, receiver

from pushgate.domain.receipts import ReceiptEvent
from pushgate.domain.timefmt import parse_rfc3339, rfc3339
from pushgate.domain.webhooks import verify
from pushgate.store.publishes.receipts import Receipt
from pushgate.store.realtime_deliveries import RealtimeDeliveries
from pushgate.store.schema import deliveries, publish_stats, publishes


def as_token(gw: Gateway, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def self_registered(gw: Gateway, provider: str) -> tuple[dict[str, Any], str]:
    """A device registered with a client token, as an app does it: ``(device, device token)``."""
    r = await gw.client.post("/v1/client-tokens", json={"user": "u1"})
    assert r.status_code == 200, r.text
    token = (
        {"provider": "fcm", "token": fcm_token(), "platform": "android"}
        if provider == "fcm"
        else {"provider": "apns", "token": secrets.token_hex(32), "platform": "ios"}
    )
    async with as_token(gw, r.json()["token"]) as client:
        r = await client.post("/v1/devices", json=token)
    assert r.status_code == 200, r.text
    return r.json()["device"], r.json()["device_token"]


def received_ids(lab: Lab, device: dict[str, Any]) -> dict[str, str]:
    """``pushgate`` of the one push the lab received for ``device`` (FCM: a JSON string in
    ``data``; APNs: a custom key next to ``aps``)."""
    token = device["token"].lower() if device["provider"] == "apns" else device["token"]
    (item,) = lab.ledger(device["provider"], token)["items"]
    if device["provider"] == "fcm":
        return dict(json.loads(item["message"]["data"]["pushgate"]))
    return dict(item["payload"]["pushgate"])


async def report(client: httpx.AsyncClient, *items: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = await client.post("/v1/receipts", json={"receipts": list(items)})
    assert r.status_code == status, r.text
    return dict(r.json())


async def counts(gw: Gateway, pid: str) -> dict[str, int]:
    r = await gw.client.get(f"/v1/publishes/{pid}")
    return {k: r.json()["counts"][k] for k in ("delivered", "opened", "dismissed", "clicked")}


async def by_device(gw: Gateway, pid: str) -> dict[str, dict[str, Any]]:
    return {d["recipient_id"]: d for d in await gw.deliveries(pid)}


@pytest.mark.parametrize("provider", ["fcm", "apns"])
async def test_a_device_reports_delivered_then_opened_with_its_token(
    gateway: Gateway, lab: Lab, provider: str
) -> None:
    device, device_token = await self_registered(gateway, provider)
    other = await register(gateway, provider="fcm", token=fcm_token(), platform="android", user="u2")
    pid = await publish(
        gateway.client,
        recipients=[{"type": "device", "device_id": d["id"]} for d in (device, other)],
        campaign="spring",
    )
    assert (await gateway.wait_done(pid))["counts"]["sent"] == 2
    ids = received_ids(lab, device)
    assert ids == {"p": pid, "d": device["id"]}
    assert received_ids(lab, other) == {"p": pid, "d": other["id"]}
    async with as_token(gateway, device_token) as me:
        got = await report(me, {"publish_id": ids["p"], "delivery_id": ids["d"], "event": "delivered"})
        assert got["results"] == [
            {"publish_id": pid, "delivery_id": device["id"], "event": "delivered", "result": "recorded",
             "recorded_events": ["delivered"]},
        ]  # fmt: skip
        assert (got["recorded"], got["duplicate"], got["not_found"]) == (1, 0, 0)
        got = await report(me, {"publish_id": ids["p"], "delivery_id": ids["d"], "event": "opened"})
        assert got["results"][0]["recorded_events"] == ["opened"]
        assert await counts(gateway, pid) == {"delivered": 1, "opened": 1, "dismissed": 0, "clicked": 0}
        mine = (await by_device(gateway, pid))[device["id"]]
        assert mine["delivered_at"] is not None and mine["opened_at"] is not None
        assert parse_rfc3339(mine["delivered_at"]) <= parse_rfc3339(mine["opened_at"]) <= time.time() + 1
        assert (mine["dismissed_at"], mine["clicked_at"]) == (None, None)
        # A repeat (a retried request) is a duplicate and moves nothing.
        again = await report(
            me,
            {"publish_id": pid, "delivery_id": device["id"], "event": "opened"},
            {"publish_id": pid, "device_id": device["id"], "event": "delivered"},
        )
        assert [r["result"] for r in again["results"]] == ["duplicate", "duplicate"]
        assert (again["recorded"], again["duplicate"], again["not_found"]) == (0, 2, 0)
        assert await counts(gateway, pid) == {"delivered": 1, "opened": 1, "dismissed": 0, "clicked": 0}
        assert (await by_device(gateway, pid))[device["id"]]["opened_at"] == mine["opened_at"]
        # Another device's delivery is not found (by either form), and nothing of it changes.
        theirs = await report(
            me,
            {"publish_id": pid, "delivery_id": other["id"], "event": "opened"},
            {"publish_id": pid, "device_id": other["id"], "event": "delivered"},
        )
        assert [r["result"] for r in theirs["results"]] == ["not_found", "not_found"]
        assert (await by_device(gateway, pid))[other["id"]]["delivered_at"] is None
        # Nor can the device token list devices.
        r = await me.get("/v1/devices")
        assert r.status_code == 403, r.text
    assert await counts(gateway, pid) == {"delivered": 1, "opened": 1, "dismissed": 0, "clicked": 0}
    stats = (await gateway.client.get("/v1/campaigns/spring/stats")).json()
    assert (stats["counts"]["delivered"], stats["counts"]["opened"], stats["counts"]["sent"]) == (1, 1, 2)


async def test_the_app_key_reports_by_device_id_for_multicast_payloads(gateway: Gateway, lab: Lab) -> None:
    hms_token = "IQAAAACy0" + secrets.token_urlsafe(60)
    device = await register(gateway, provider="hms", token=hms_token, platform="android")
    pid = await publish(
        gateway.client,
        recipients=[{"type": "device", "device_id": device["id"]}],
        notification={"title": "Hi", "data": {"k": "v"}},
    )
    assert (await gateway.wait_done(pid))["counts"]["sent"] == 1
    (item,) = lab.ledger("hms", hms_token)["items"]
    # One HMS request carries many tokens: only the publish id is in the payload.
    assert json.loads(item["message"]["data"]) == {"pushgate": {"p": pid}, "k": "v"}
    at = rfc3339(time.time())
    got = await report(
        gateway.client,
        {"publish_id": pid, "device_id": device["id"], "event": "clicked", "at": at},
        {"publish_id": pid, "device_id": "dev_unknown", "event": "opened"},
        {"publish_id": "pub_unknown", "device_id": device["id"], "event": "opened"},
    )
    assert [r["result"] for r in got["results"]] == ["recorded", "not_found", "not_found"]
    # A click implies the delivery (an app killed before reporting it still counts).
    assert got["results"][0]["recorded_events"] == ["delivered", "clicked"]
    record = (await by_device(gateway, pid))[device["id"]]
    assert record["clicked_at"] == record["delivered_at"] == at and record["opened_at"] is None
    assert await counts(gateway, pid) == {"delivered": 1, "opened": 0, "dismissed": 0, "clicked": 1}
    by_provider = (await gateway.client.get(f"/v1/publishes/{pid}")).json()
    assert by_provider["counts"]["sent"] == 1


async def test_bad_reports_are_400s_that_record_nothing(gateway: Gateway) -> None:
    device = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    pid = await publish(gateway.client, recipients=[{"type": "device", "device_id": device["id"]}])
    await gateway.wait_done(pid)
    good = {"publish_id": pid, "delivery_id": device["id"], "event": "delivered"}
    one = "receipts[0]: give exactly one of delivery_id"
    early = "receipts[1].at: 2020-01-01T00:00:00Z is before"
    cases: list[tuple[Any, str]] = [
        ({"receipts": []}, "receipts: give 1 to 500 receipts per request (got 0)"),
        ({"receipts": [good] * 501}, "receipts: give 1 to 500 receipts per request (got 501)"),
        ({"receipts": [{**good, "device_id": device["id"]}]}, one),
        ({"receipts": [{"publish_id": pid, "event": "opened"}]}, one),
        ({"receipts": [good, {**good, "event": "read"}]}, "receipts[1].event: 'read' is not an event"),
        ({"receipts": [{**good, "at": "yesterday"}]}, "receipts[0].at: not an RFC 3339 time"),
        ({"receipts": [{**good, "at": rfc3339(time.time() + 3600)}]}, "Z is in the future (more than 300 s"),
        ({"receipts": [good, {**good, "at": "2020-01-01T00:00:00Z"}]}, early),
        ({"receipts": [{**good, "extra": 1}]}, "receipts[0]: Object contains unknown field `extra`"),
    ]  # fmt: skip
    for body, words in cases:
        r = await gateway.client.post("/v1/receipts", json=body)
        assert r.status_code == 400, (body, r.text)
        assert words in r.json()["error"]["message"], (words, r.text)
    # The valid items of a refused request were not recorded either (one transaction).
    assert (await by_device(gateway, pid))[device["id"]]["delivered_at"] is None
    assert (await counts(gateway, pid))["delivered"] == 0


async def test_webhooks_receive_each_new_receipt_once(database_url: str, lab: Lab) -> None:
    async with hooked_gateway(database_url, lab) as gw, receiver() as rx:
        _, secret = await add_webhook(gw, rx.url, ["receipt"])
        device = await register(gw, provider="fcm", token=fcm_token(), platform="android")
        pid = await publish(gw.client, recipients=[{"type": "device", "device_id": device["id"]}])
        await gw.wait_done(pid)
        item = {"publish_id": pid, "delivery_id": device["id"], "event": "opened"}
        await report(gw.client, item)
        await report(gw.client, item)  # a duplicate: no event
        await wait_for(lambda: len(rx.events("receipt")) == 2, 10, "two receipt events")
        events = sorted(rx.events("receipt"), key=lambda e: e["data"]["event"])
        assert [e["data"]["event"] for e in events] == ["delivered", "opened"]
        for e in events:
            data = e["data"]
            assert (data["publish_id"], data["delivery_id"], data["device_id"]) == (
                pid,
                device["id"],
                device["id"],
            )
            assert data["at"] == (await by_device(gw, pid))[device["id"]][f"{data['event']}_at"]
        for headers, body in rx.got:
            assert verify(secret, headers["X-Pushgate-Signature"], body, int(time.time()))
        await report(gw.client, {**item, "event": "dismissed"})
        await wait_for(lambda: len(rx.events("receipt")) == 3, 10, "the dismissed event")
        assert len(rx.got) == 3


async def test_a_realtime_sessions_delivery_id_is_accepted(gateway: Gateway) -> None:
    """A realtime delivery is ``ses_<socket.io sid>``, and engine.io's sids are base64url: a
    ``-`` in one (about one session in five) made every report of it a 400."""
    device = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    pid = await publish(gateway.client, recipients=[{"type": "device", "device_id": device["id"]}])
    await gateway.wait_done(pid)
    services = gateway.app.state.services
    sid = "Ab-Cd_ef0123456789xyz"  # the shape of engineio's generate_id()
    store = RealtimeDeliveries(services.db, services.publishes)
    async with services.db.write() as conn:
        assert await store.record_sessions(conn, pid, [sid], time.time()) == 1
    got = await report(gateway.client, {"publish_id": pid, "delivery_id": f"ses_{sid}", "event": "opened"})
    assert [r["result"] for r in got["results"]] == ["recorded"], got
    assert (await by_device(gateway, pid))[f"ses_{sid}"]["opened_at"] is not None


async def test_a_batch_of_receipts_does_not_deadlock_with_a_dispatcher(
    gateway: Gateway, database_url: str
) -> None:
    """PostgreSQL: a dispatcher's (or a cancel's) transaction locks delivery rows, then the
    publish's counters. A receipts request moved the counters after its first item and then
    waited for the next item's delivery row: a lock cycle, one of the two aborted (a 500)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: no lock cycle")
    phones = [await register(gateway, provider="fcm", token=fcm_token(), platform="android") for _ in "ab"]
    pid = await publish(gateway.client, recipients=[{"type": "device", "device_id": d["id"]} for d in phones])
    await gateway.wait_done(pid)
    db = gateway.app.state.services.db
    async with db.read() as conn:
        app_id = (await conn.execute(sa.select(publishes.c.app_id).where(publishes.c.id == pid))).scalar_one()
    busy, free = phones[0]["id"], phones[1]["id"]

    async def waiting_on_a_lock() -> int:
        async with db.read() as conn:
            q = sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            return int((await conn.execute(q)).scalar_one())

    now = time.time()
    reports = [Receipt(pid, rid, ReceiptEvent.OPENED, now) for rid in (free, busy)]
    async with db.write() as conn:  # what a dispatcher's outcome transaction does
        key = (deliveries.c.publish_id == pid, deliveries.c.recipient_id == busy)
        await conn.execute(sa.update(deliveries).where(*key).values(updated_at=now))
        receipts = asyncio.create_task(gateway.app.state.services.publishes.record_receipts(app_id, reports))
        await wait_for(waiting_on_a_lock, 10, "the receipts waiting for the dispatcher's row")
        stats = (publish_stats.c.publish_id == pid, publish_stats.c.provider == "fcm")
        await conn.execute(sa.update(publish_stats).where(*stats).values(sent=publish_stats.c.sent))
    done = await asyncio.wait_for(receipts, 10)
    assert [d.result.value for d in done] == ["recorded", "recorded"]
    assert await counts(gateway, pid) == {"delivered": 2, "opened": 2, "dismissed": 0, "clicked": 0}
