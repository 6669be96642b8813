"""Huawei Push Kit through the provider lab: the provider against the lab directly, then the gateway.

The rendering and the provider over the mock transport are in ``test_hms.py`` (unit tier).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tomllib
from collections import Counter
from typing import Any

from support.gateway import Gateway
from support.lab import Lab, lab_outbound

from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_hms import hms_collapse_key, render
from pushgate.providers.base import Target
from pushgate.providers.hms import HmsProvider
from pushgate.providers.http import create_transport

NO = ProviderOverrides()
CLICK = "android.notification.click_action"


# =================================================================== the lab, directly


def _hms_settings(lab: Lab) -> dict[str, Any]:
    return dict(tomllib.loads(lab.toml.read_text())["hms"])


def _token() -> str:
    return "IQAAAACy0" + secrets.token_urlsafe(60)


async def test_lab_splits_large_batches_and_checks_credentials(lab: Lab) -> None:
    lab.reset()
    transport = create_transport(timeout=10.0, ca_file=lab.ca_file, outbound=lab_outbound())
    try:
        provider = await HmsProvider.create(_hms_settings(lab), transport)
        targets = [Target(f"d{i}", _token()) for i in range(2300)]
        message = render(Notification(title="Hi", body="There", data={"k": "v"}), NO, 0.0)
        results = await provider.send_batch(message, targets)
        assert {r.outcome for r in results} == {Outcome.SENT}
        ledger = lab.ledger("hms")
        assert ledger["total"] == 2300
        assert Counter(i["batch_size"] for i in ledger["items"]) == Counter({1000: 2000, 300: 300})
        assert all(
            i["message"]["data"] == '{"k":"v"}' and "token" not in i["message"] for i in ledger["items"]
        )

        wrong = await HmsProvider.create({**_hms_settings(lab), "client_secret": "wrong"}, transport)
        [res] = await wrong.send_batch(message, [Target("d", _token())])
        assert (res.outcome, res.error_code) == (Outcome.CREDENTIAL, "oauth_failed")
        assert "invalid client secret" in (res.error_message or "")

        too_big = {**message, "data": "x" * 5000}
        [res] = await provider.send_batch(too_big, [Target("d", _token())])
        assert (res.outcome, res.error_code) == (Outcome.PAYLOAD, "80300008")

        [res] = await provider.send_batch(message, [Target("t", "topic:news")])
        assert res.outcome is Outcome.SENT
        assert lab.ledger("hms", "topic:news")["items"][0]["target_kind"] == "topic"

        # An expired access token (80200003) is replaced once, transparently.
        lab.fault(provider="hms", error="expired_token", times=1, tokens=["expiring"])
        [res] = await provider.send_batch(message, [Target("d", "expiring")])
        assert res.outcome is Outcome.SENT
        assert provider.oauth.fetches == 2
    finally:
        lab.reset()
        await transport.aclose()


# =================================================================== through the gateway
# The promises every provider keeps (terminal tokens invalidate, retryable errors are retried,
# a refused credential keeps the devices, oversize is refused at admission, a fan-out reaches each
# device once) are checked for all six in test_provider_contract.py; these tests are HMS's own.


async def _register(gw: Gateway, token: str, channel: str) -> dict[str, Any]:
    r = await gw.client.post(
        "/v1/devices", json={"provider": "hms", "token": token, "platform": "android", "channels": [channel]}
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["device"])


async def _devices(gw: Gateway, n: int, channel: str) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(20)

    async def one() -> dict[str, Any]:
        async with sem:
            return await _register(gw, _token(), channel)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _publish(gw: Gateway, channel: str, **notification: Any) -> str:
    body = {
        "recipients": [{"type": "channel", "channel": channel}],
        "notification": notification or {"title": "Order shipped", "body": "On its way"},
    }
    r = await gw.client.post("/v1/publish", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["publish_id"])


async def _status(gw: Gateway, device_id: str) -> str:
    return str((await gw.client.get(f"/v1/devices/{device_id}")).json()["device"]["status"])


async def test_fanout_200_devices_one_native_request_per_device(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 200, "orders")
    pub = await _publish(
        gateway,
        "orders",
        title="Order shipped",
        body="On its way",
        data={"order": "42"},
        priority="high",
        ttl_seconds=3600,
        collapse_key="order-42",
        channel_id="orders",
        url="https://shop.example/o/42",
    )
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 200, status
    ledger = lab.ledger("hms")
    assert ledger["total"] == 200
    assert Counter(i["token"] for i in ledger["items"]) == Counter(d["token"] for d in devices)
    for item in ledger["items"]:
        assert item["batch_size"] <= 1000
        msg = item["message"]
        # Multicast: only the publish id fits (docs/receipts.md).
        assert json.loads(msg["data"]) == {"pushgate": {"p": pub}, "order": "42"}
        assert msg["android"]["urgency"] == "HIGH"
        assert msg["android"]["ttl"] == "3600s"
        assert msg["android"]["collapse_key"] == hms_collapse_key("order-42")
        note = msg["android"]["notification"]
        assert (note["title"], note["body"], note["channel_id"]) == ("Order shipped", "On its way", "orders")
        assert note["click_action"] == {"type": 2, "url": "https://shop.example/o/42"}
    deliveries = await gateway.deliveries(pub)
    assert {d["status"] for d in deliveries} == {"sent"}
    assert all(d["provider_message_id"] for d in deliveries)


async def test_all_tokens_invalid_marks_every_device(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 4, "gone")
    lab.fault(provider="hms", tokens=[d["token"] for d in devices], error="invalid")
    pub = await _publish(gateway, "gone")
    status = await gateway.wait_done(pub)
    assert status["counts"]["invalid_token"] == 4
    assert {x["error_code"] for x in await gateway.deliveries(pub)} == {"80300007"}
    assert {await _status(gateway, d["id"]) for d in devices} == {"invalid"}
