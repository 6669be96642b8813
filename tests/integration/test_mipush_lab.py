"""Xiaomi MiPush through the provider lab: the provider against the lab directly, then the gateway.

The rendering and the provider over the mock transport are in ``test_mipush.py`` (unit tier).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tomllib
from collections import Counter
from typing import Any

import pytest
from support.gateway import Gateway
from support.lab import Lab, lab_outbound

from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_mipush import MiPushRendered, mipush_notify_id, render
from pushgate.providers.base import Target
from pushgate.providers.http import create_transport
from pushgate.providers.mipush import MiPushProvider

NO = ProviderOverrides()
NOW = 1_700_000_000.5


# =================================================================== the lab
# The promises every provider keeps (terminal tokens invalidate, retryable errors are retried,
# a refused credential keeps the devices, oversize is refused at admission, a fan-out reaches each
# device once) are checked for all six in test_provider_contract.py; these tests are MiPush's own.


def _regid() -> str:
    return secrets.token_urlsafe(33) + "/" + secrets.token_hex(4)


def _mi_settings(lab: Lab) -> dict[str, Any]:
    return dict(tomllib.loads(lab.toml.read_text())["mipush"])


async def test_lab_checks_secret_package_and_fields(lab: Lab) -> None:
    lab.reset()
    transport = create_transport(timeout=10.0, ca_file=lab.ca_file, outbound=lab_outbound())
    try:
        provider = await MiPushProvider.create(_mi_settings(lab), transport)
        rendered = render(Notification(title="T" * 80, body="B" * 300, data={"k": "v"}), NO, NOW)
        regids = [_regid() for _ in range(1500)]
        results = await provider.send_batch(rendered, [Target(r, r) for r in regids])
        assert {r.outcome for r in results} == {Outcome.SENT}
        ledger = lab.ledger("mipush")
        assert ledger["total"] == 1500
        assert Counter(i["batch_size"] for i in ledger["items"]) == Counter({1000: 1000, 500: 500})
        fields = ledger["items"][0]["fields"]
        assert len(fields["title"]) == 49 and len(fields["description"]) == 127
        assert fields["payload"] == '{"k":"v"}'

        wrong = await MiPushProvider.create({**_mi_settings(lab), "app_secret": "nope"}, transport)
        [r] = await wrong.send_batch(rendered, [Target("a", _regid())])
        assert (r.outcome, r.error_code) == (Outcome.CREDENTIAL, "21301")
        other = await MiPushProvider.create({**_mi_settings(lab), "package_name": "com.other"}, transport)
        [r] = await other.send_batch(rendered, [Target("a", _regid())])
        assert (r.outcome, r.error_code) == (Outcome.CREDENTIAL, "22022")
        too_long = MiPushRendered(fields={**rendered.fields, "title": "x" * 50})
        [r] = await provider.send_batch(too_long, [Target("a", _regid())])
        assert (r.outcome, r.error_code) == (Outcome.PAYLOAD, "10017")
        big = MiPushRendered(fields={**rendered.fields, "payload": "x" * 5000})
        [r] = await provider.send_batch(big, [Target("a", _regid())])
        assert (r.outcome, r.error_code) == (Outcome.PAYLOAD, "65009")
    finally:
        lab.reset()
        await transport.aclose()


async def _devices(gw: Gateway, n: int, channel: str) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(20)

    async def one() -> dict[str, Any]:
        async with sem:
            r = await gw.client.post(
                "/v1/devices",
                json={"provider": "mipush", "token": _regid(), "platform": "android", "channels": [channel]},
            )
            assert r.status_code == 200, r.text
            return dict(r.json()["device"])

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _publish(gw: Gateway, channel: str, **notification: Any) -> str:
    body = {
        "recipients": [{"type": "channel", "channel": channel}],
        "notification": notification or {"title": "Sale", "body": "50% off"},
    }
    r = await gw.client.post("/v1/publish", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["publish_id"])


async def _status(gw: Gateway, device_id: str) -> str:
    return str((await gw.client.get(f"/v1/devices/{device_id}")).json()["device"]["status"])


async def test_fanout_200_devices_one_request_field_set_each(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 200, "deals")
    pub = await _publish(
        gateway,
        "deals",
        title="Sale",
        body="50% off today",
        data={"deal": "7"},
        ttl_seconds=600,
        collapse_key="deal-7",
        channel_id="promo",
        url="https://shop.example/d/7",
    )
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 200, status
    ledger = lab.ledger("mipush")
    assert ledger["total"] == 200
    assert Counter(i["token"] for i in ledger["items"]) == Counter(d["token"] for d in devices)
    for item in ledger["items"]:
        f = item["fields"]
        assert item["batch_size"] <= 1000
        assert (f["title"], f["description"], f["pass_through"]) == ("Sale", "50% off today", "0")
        # Multicast: only the publish id fits (docs/receipts.md).
        assert json.loads(f["payload"]) == {"pushgate": {"p": pub}, "deal": "7"}
        assert f["restricted_package_name"] == "com.example.pushgate.lab"
        assert f["time_to_live"] == "600000" and f["notify_id"] == str(mipush_notify_id("deal-7", 0))
        assert (f["extra.channel_id"], f["extra.notify_effect"], f["extra.web_uri"]) == (
            "promo",
            "3",
            "https://shop.example/d/7",
        )
    assert {d["status"] for d in await gateway.deliveries(pub)} == {"sent"}


async def test_no_valid_regid_marks_every_device(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 3, "gone")
    lab.fault(provider="mipush", tokens=[d["token"] for d in devices], error="invalid")
    pub = await _publish(gateway, "gone")
    status = await gateway.wait_done(pub)
    assert status["counts"]["invalid_token"] == 3
    assert {x["error_code"] for x in await gateway.deliveries(pub)} == {"20301"}
    assert {await _status(gateway, d["id"]) for d in devices} == {"invalid"}


@pytest.mark.parametrize(("error", "code"), [("429", "10027")])
async def test_retryable_error_is_retried_then_delivered(
    gateway: Gateway, lab: Lab, error: str, code: str
) -> None:
    devices = await _devices(gateway, 4, "retry")
    lab.fault(provider="mipush", tokens=[devices[0]["token"]], error=error, times=1)
    pub = await _publish(gateway, "retry")
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 4, status
    assert {d["attempts"] for d in await gateway.deliveries(pub)} == {2}
    assert Counter(i["token"] for i in lab.ledger("mipush")["items"]) == Counter(d["token"] for d in devices)
