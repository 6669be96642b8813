"""WNS through the provider lab: the provider against the lab directly, then the gateway.

The rendering and the provider over the mock transport are in ``test_wns.py`` (unit tier).
"""

from __future__ import annotations

import asyncio
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

import pytest
from support.bulk import register_many
from support.gateway import Gateway
from support.lab import Lab, lab_outbound

from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_wns import WnsRendered, render
from pushgate.providers.base import Target
from pushgate.providers.http import create_transport
from pushgate.providers.wns import WnsProvider

NO = ProviderOverrides()
TOAST = render(Notification(title="T", body="B", ttl_seconds=60), NO, 0.0)


# =================================================================== the lab
# The promises every provider keeps (terminal tokens invalidate, retryable errors are retried,
# a refused credential keeps the devices, oversize is refused at admission, a fan-out reaches each
# device once) are checked for all six in test_provider_contract.py; these tests are WNS's own.


def _channel(lab: Lab) -> str:
    with lab.client() as c:
        r = c.post("/wns/channels")
        r.raise_for_status()
        return str(r.json()["channel_uri"])


def _wns_settings(lab: Lab) -> dict[str, Any]:
    return dict(tomllib.loads(lab.toml.read_text())["wns"])


async def test_lab_checks_credentials_headers_and_xml(lab: Lab) -> None:
    lab.reset()
    transport = create_transport(timeout=10.0, ca_file=lab.ca_file, outbound=lab_outbound())
    try:
        provider = await WnsProvider.create(_wns_settings(lab), transport)
        uri = await asyncio.to_thread(_channel, lab)
        [r] = await provider.send_batch(TOAST, [Target("a", uri)])
        assert r.outcome is Outcome.SENT and r.provider_message_id
        [item] = lab.ledger("wns", uri)["items"]
        assert item["type"] == "toast" and item["headers"]["X-WNS-TTL"] == "60"
        assert ET.fromstring(item["body"]).find("visual/binding/text").text == "T"  # type: ignore[union-attr]

        badge = render(Notification(badge=3), NO, 0.0)
        raw = render(Notification(content_available=True, data={"k": "v"}), NO, 0.0)
        results = await provider.send_batch(badge, [Target("a", uri)]) + await provider.send_batch(
            raw, [Target("a", uri)]
        )
        assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]

        broken = WnsRendered(type="toast", headers=TOAST.headers, body=b"<toast><visual>")
        wrong_type = WnsRendered(
            type="raw", headers={**TOAST.headers, "Content-Type": "text/plain"}, body=b"{}"
        )
        big = WnsRendered(type="raw", headers={**raw.headers}, body=b"x" * 5001)
        got = [(await provider.send_batch(x, [Target("a", uri)]))[0] for x in (broken, wrong_type, big)]
        assert [(r.outcome, r.error_code) for r in got] == [
            (Outcome.PAYLOAD, "http_400"),
            (Outcome.PAYLOAD, "http_400"),
            (Outcome.PAYLOAD, "http_413"),
        ]
        assert "well-formed" in (got[0].error_message or "")

        [r] = await provider.send_batch(TOAST, [Target("a", uri.rsplit("/", 1)[0] + "/unknown")])
        assert (r.outcome, r.error_code) == (Outcome.DEVICE_TERMINAL, "http_404")

        wrong = await WnsProvider.create({**_wns_settings(lab), "client_secret": "nope"}, transport)
        [r] = await wrong.send_batch(TOAST, [Target("a", uri)])
        assert (r.outcome, r.error_code) == (Outcome.CREDENTIAL, "oauth_failed")

        lab.fault(provider="wns", tokens=[uri], error="expired_token", times=1)
        [r] = await provider.send_batch(TOAST, [Target("a", uri)])
        assert r.outcome is Outcome.SENT and provider.oauth.fetches == 2
    finally:
        lab.reset()
        await transport.aclose()


async def _devices(gw: Gateway, lab: Lab, n: int, channel: str) -> list[dict[str, Any]]:
    """``n`` WNS devices: channel URIs minted over one lab connection, registered in batches."""

    def mint() -> list[str]:
        with lab.client() as c:
            return [str(c.post("/wns/channels").raise_for_status().json()["channel_uri"]) for _ in range(n)]

    uris = await asyncio.to_thread(mint)
    items = [{"provider": "wns", "token": u, "platform": "windows", "channels": [channel]} for u in uris]
    return await register_many(gw, items)


async def _publish(gw: Gateway, channel: str, **notification: Any) -> str:
    body = {
        "recipients": [{"type": "channel", "channel": channel}],
        "notification": notification or {"title": "Build finished", "body": "All green"},
    }
    r = await gw.client.post("/v1/publish", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["publish_id"])


async def _status(gw: Gateway, device_id: str) -> str:
    return str((await gw.client.get(f"/v1/devices/{device_id}")).json()["device"]["status"])


async def test_fanout_200_devices_one_toast_each(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, lab, 200, "builds")
    pub = await _publish(
        gateway,
        "builds",
        title="Build finished",
        body="All green",
        image="https://ci.example/badge.png",
        url="https://ci.example/b/1",
        ttl_seconds=600,
        collapse_key="build-1",
        thread_id="ci",
    )
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 200, status
    ledger = lab.ledger("wns")
    assert ledger["total"] == 200
    assert Counter(i["token"] for i in ledger["items"]) == Counter(d["token"] for d in devices)
    for item in ledger["items"]:
        h = item["headers"]
        assert (h["X-WNS-Type"], h["Content-Type"], h["X-WNS-TTL"]) == ("wns/toast", "text/xml", "600")
        assert (h["X-WNS-Tag"], h["X-WNS-Group"], h["X-WNS-RequestForStatus"]) == ("build-1", "ci", "true")
        toast = ET.fromstring(item["body"])
        assert toast.get("launch") == "https://ci.example/b/1"
        assert [t.text for t in toast.iter("text")] == ["Build finished", "All green"]
        assert toast.find("visual/binding/image").get("src") == "https://ci.example/badge.png"  # type: ignore[union-attr]
    deliveries = await gateway.deliveries(pub)
    assert {d["status"] for d in deliveries} == {"sent"} and all(d["provider_message_id"] for d in deliveries)


async def test_gone_and_invalid_channels_mark_exactly_those_devices(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, lab, 8, "news")
    expired, invalid = devices[0], devices[1]
    with lab.client() as c:
        c.delete(f"/wns/channels/{expired['token'].rsplit('/', 1)[1]}").raise_for_status()
    lab.fault(provider="wns", tokens=[invalid["token"]], error="invalid")
    pub = await _publish(gateway, "news")
    status = await gateway.wait_done(pub)
    assert (status["counts"]["invalid_token"], status["counts"]["sent"]) == (2, 6)
    codes = {x["device_id"]: x["error_code"] for x in await gateway.deliveries(pub, status="invalid_token")}
    assert codes == {expired["id"]: "http_410", invalid["id"]: "http_404"}
    assert [await _status(gateway, d["id"]) for d in devices] == ["invalid"] * 2 + ["active"] * 6


@pytest.mark.parametrize(("error", "retry_after"), [("429", 1)])
async def test_retryable_error_is_retried_then_delivered(
    gateway: Gateway, lab: Lab, error: str, retry_after: int | None
) -> None:
    devices = await _devices(gateway, lab, 3, "retry")
    spec: dict[str, Any] = {"provider": "wns", "tokens": [devices[0]["token"]], "error": error, "times": 1}
    if retry_after is not None:
        spec["retry_after"] = retry_after
    lab.fault(**spec)
    pub = await _publish(gateway, "retry")
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 3, status
    attempts = {d["device_id"]: d["attempts"] for d in await gateway.deliveries(pub)}
    assert attempts[devices[0]["id"]] == 2 and sorted(attempts.values()) == [1, 1, 2]
    assert Counter(i["token"] for i in lab.ledger("wns")["items"]) == Counter(d["token"] for d in devices)


async def test_registration_rejects_a_token_that_is_no_channel_uri(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/v1/devices",
        json={"provider": "wns", "token": "ftp://db5p.notify.windows.com/x", "platform": "windows"},
    )
    assert r.status_code == 400
    assert "channel URI" in r.text
