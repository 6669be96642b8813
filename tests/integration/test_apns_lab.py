"""APNs end to end against the lab's HTTP/2 simulator (TLS with the lab CA, and h2c).

Through the gateway: fan-out, terminal/retryable/credential errors, sandbox routing. Against the
provider directly (to stay fast): 10,000 notifications on one connection with one JWT and no
stream-limit violation, JWT expiry and re-minting, churn, bad keys, certificate auth.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.gateway import Gateway
from support.lab import Lab, lab_outbound

from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_apns import render
from pushgate.lab.apns_credentials import BUNDLE_ID, CERT_PASSWORD, CLIENT_P12_FILE
from pushgate.providers.apns import ApnsProvider
from pushgate.providers.base import Target
from pushgate.providers.http import create_transport


def _token() -> str:
    return secrets.token_hex(32)


def _config(lab: Lab) -> dict[str, Any]:
    return dict(tomllib.loads(lab.toml.read_text())["apns"])


def _stats(lab: Lab) -> dict[str, Any]:
    with lab.client() as c:
        return dict(c.get("/apns/stats").json())


def _reset_stats(lab: Lab) -> None:
    with lab.client() as c:
        c.delete("/apns/stats").raise_for_status()


@pytest.fixture
async def direct(lab: Lab) -> AsyncIterator[Any]:
    """Build providers from the lab's config on a real transport; closes them afterwards."""
    lab.reset()
    made: list[ApnsProvider] = []
    shared = create_transport(outbound=lab_outbound())

    async def make(**overrides: Any) -> ApnsProvider:
        settings = {k: v for k, v in (_config(lab) | overrides).items() if v is not None}
        provider = await ApnsProvider.create(settings, shared)
        made.append(provider)
        return provider

    yield make
    for p in made:
        await p.aclose()
    await shared.aclose()
    with lab.client() as c:
        c.put("/apns/settings", json={"max_concurrent_streams": 1000}).raise_for_status()
        c.delete("/apns/devices").raise_for_status()
    lab.reset()


def _rendered(**fields: Any) -> Any:
    return render(Notification(**(fields or {"title": "T", "body": "B"})), ProviderOverrides(), time.time())


# =================================================================== through the gateway
# The promises every provider keeps (terminal tokens invalidate, retryable errors are retried,
# a refused credential keeps the devices, oversize is refused at admission, a fan-out reaches each
# device once) are checked for all six in test_provider_contract.py; these tests are APNs's own.


async def _register(gw: Gateway, token: str, channel: str, **extra: Any) -> dict[str, Any]:
    body = {"provider": "apns", "token": token, "platform": "ios", "channels": [channel], **extra}
    r = await gw.client.post("/v1/devices", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["device"])


async def _devices(gw: Gateway, n: int, channel: str, **extra: Any) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(20)

    async def one() -> dict[str, Any]:
        async with sem:
            return await _register(gw, _token(), channel, **extra)

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


async def test_fanout_200_devices_one_request_per_device(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 200, "orders")
    before = time.time()
    pub = await _publish(
        gateway,
        "orders",
        title="Order shipped",
        body="On its way",
        data={"order": "42"},
        sound="default",
        badge=2,
        thread_id="orders",
        priority="high",
        ttl_seconds=3600,
        collapse_key="order-42",
        url="https://shop.example/o/42",
        image="https://shop.example/o/42.png",
    )
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 200, status
    ledger = lab.ledger("apns")
    assert ledger["total"] == 200
    assert Counter(i["token"] for i in ledger["items"]) == Counter(d["token"] for d in devices)
    device_of = {d["token"]: d["id"] for d in devices}
    for item in ledger["items"]:
        # Each payload names its own delivery record (docs/receipts.md).
        assert item["payload"].pop("pushgate") == {"p": pub, "d": device_of[item["token"]]}
        h = item["headers"]
        assert h["apns-topic"] == BUNDLE_ID
        assert (h["apns-push-type"], h["apns-priority"], h["apns-collapse-id"]) == ("alert", "10", "order-42")
        assert before + 3600 - 5 <= int(h["apns-expiration"]) <= time.time() + 3600
        assert str(uuid.UUID(h["apns-id"])) == h["apns-id"]
        assert item["auth"] == "token" and item["transport"] == "h2"
        assert item["payload"] == {
            "aps": {
                "alert": {"title": "Order shipped", "body": "On its way"},
                "sound": "default",
                "badge": 2,
                "thread-id": "orders",
                "mutable-content": 1,
            },
            "order": "42",
            "url": "https://shop.example/o/42",
            "image_url": "https://shop.example/o/42.png",
        }
    deliveries = await gateway.deliveries(pub)
    assert {d["status"] for d in deliveries} == {"sent"}
    assert {d["provider_message_id"] for d in deliveries} == {
        i["headers"]["apns-id"] for i in ledger["items"]
    }


async def test_sandbox_devices_go_to_the_sandbox_host_over_h2c(gateway: Gateway, lab: Lab) -> None:
    prod = await _devices(gateway, 2, "mixed")
    sandbox = await _devices(gateway, 2, "mixed", environment="sandbox")
    pub = await _publish(gateway, "mixed", content_available=True, data={"sync": "1"})
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 4, status
    by_token = {i["token"]: i for i in lab.ledger("apns")["items"]}
    assert {by_token[d["token"]]["transport"] for d in prod} == {"h2"}
    assert {by_token[d["token"]]["transport"] for d in sandbox} == {"h2c"}
    item = by_token[prod[0]["token"]]
    assert (item["headers"]["apns-push-type"], item["headers"]["apns-priority"]) == ("background", "5")
    ids = {"p": pub, "d": prod[0]["id"]}
    assert item["payload"] == {"pushgate": ids, "aps": {"content-available": 1}, "sync": "1"}


async def test_terminal_errors_mark_exactly_the_affected_devices(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 12, "news")
    lab.fault(provider="apns", tokens=[devices[0]["token"], devices[1]["token"]], error="unregistered")
    lab.fault(provider="apns", tokens=[devices[2]["token"]], error="invalid")
    lab.fault(provider="apns", tokens=[devices[3]["token"]], error="topic_mismatch")
    with lab.client() as c:  # per-token state: unregistered since a given time
        c.put(
            f"/apns/devices/{devices[4]['token']}",
            json={"state": "unregistered", "timestamp": 1_700_000_000_000},
        )
        c.put(f"/apns/devices/{devices[5]['token']}", json={"state": "other_topic", "topic": "com.other.app"})
    try:
        pub = await _publish(gateway, "news")
        status = await gateway.wait_done(pub)
    finally:
        with lab.client() as c:
            c.delete("/apns/devices")
    assert (status["counts"]["invalid_token"], status["counts"]["sent"]) == (6, 6), status
    invalid = {x["device_id"]: x["error_code"] for x in await gateway.deliveries(pub, status="invalid_token")}
    assert invalid == {
        devices[0]["id"]: "Unregistered",
        devices[1]["id"]: "Unregistered",
        devices[2]["id"]: "BadDeviceToken",
        devices[3]["id"]: "DeviceTokenNotForTopic",
        devices[4]["id"]: "Unregistered",
        devices[5]["id"]: "DeviceTokenNotForTopic",
    }
    assert [await _status(gateway, d["id"]) for d in devices] == ["invalid"] * 6 + ["active"] * 6
    assert lab.ledger("apns")["total"] == 6


@pytest.mark.parametrize("error", ["429"])
async def test_retryable_error_is_retried_then_delivered(gateway: Gateway, lab: Lab, error: str) -> None:
    devices = await _devices(gateway, 5, "retry")
    lab.fault(provider="apns", tokens=[devices[0]["token"]], error=error, times=1)
    pub = await _publish(gateway, "retry")
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 5, status
    attempts = {d["device_id"]: d["attempts"] for d in await gateway.deliveries(pub)}
    assert attempts[devices[0]["id"]] == 2
    assert Counter(i["token"] for i in lab.ledger("apns")["items"]) == Counter(d["token"] for d in devices)


# =================================================================== against the provider directly


async def test_10000_notifications_one_connection_one_jwt_within_stream_limit(direct: Any, lab: Lab) -> None:
    with lab.client() as c:  # advertise fewer streams than the provider's concurrency, so the limit binds
        c.put("/apns/settings", json={"max_concurrent_streams": 100}).raise_for_status()
    _reset_stats(lab)
    provider = await direct(concurrency=500)
    targets = [Target(str(i), _token()) for i in range(10_000)]
    started = time.monotonic()
    results = await provider.send_batch(_rendered(), targets)
    elapsed = time.monotonic() - started
    assert Counter(r.outcome for r in results) == {Outcome.SENT: 10_000}
    stats = _stats(lab)
    assert stats["jwts_seen"] == 1 and provider.signer is not None and provider.signer.minted == 1
    assert stats["connections"] == 1
    assert stats["requests"] == 10_000
    assert stats["stream_limit_violations"] == 0
    assert 1 < stats["max_concurrent_streams_observed"] <= 100
    assert lab.ledger("apns")["total"] == 10_000
    assert elapsed < 20, elapsed


async def test_expired_jwt_is_reminted_once(direct: Any, lab: Lab) -> None:
    provider = await direct()
    tokens = [_token() for _ in range(20)]
    lab.fault(provider="apns", tokens=[tokens[7]], error="expired_token", times=1)
    _reset_stats(lab)
    results = await provider.send_batch(_rendered(), [Target(str(i), t) for i, t in enumerate(tokens)])
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert provider.signer is not None and provider.signer.minted == 2
    assert _stats(lab)["jwts_seen"] == 2  # the replacement was not taken for churn
    assert lab.ledger("apns")["total"] == 20


async def test_jwt_older_than_an_hour_is_refused_after_one_remint(direct: Any, lab: Lab) -> None:
    provider = await direct()
    assert provider.signer is not None
    provider.signer.clock = lambda: time.time() - 2 * 3600  # our clock runs two hours behind Apple's
    [result] = await provider.send_batch(_rendered(), [Target("a", _token())])
    assert (result.outcome, result.error_code) == (Outcome.CREDENTIAL, "ExpiredProviderToken")
    assert provider.signer.minted == 2


async def test_jwt_churn_on_one_connection_is_429(direct: Any, lab: Lab) -> None:
    provider = await direct()
    assert provider.signer is not None
    offset = [0.0]
    provider.signer.clock = lambda: time.time() + offset[0]
    [first] = await provider.send_batch(_rendered(), [Target("a", _token())])
    assert first.outcome is Outcome.SENT
    offset[0] = 46 * 60  # our clock jumps: we mint again, Apple saw the last JWT seconds ago
    [second] = await provider.send_batch(_rendered(), [Target("b", _token())])
    assert (second.outcome, second.error_code) == (Outcome.CREDENTIAL, "TooManyProviderTokenUpdates")


async def test_wrong_key_or_team_is_invalid_provider_token(direct: Any, lab: Lab, tmp_path: Any) -> None:
    other = tmp_path / "other.p8"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    for provider in (await direct(key_file=str(other)), await direct(team_id="WRONGTEAM1")):
        results = await provider.send_batch(_rendered(), [Target(str(i), _token()) for i in range(3)])
        assert {(r.outcome, r.error_code) for r in results} == {(Outcome.CREDENTIAL, "InvalidProviderToken")}
    assert lab.ledger("apns")["total"] == 0


async def test_certificate_auth_over_tls(direct: Any, lab: Lab) -> None:
    provider = await direct(
        key_file=None,
        key_id=None,
        team_id=None,
        bundle_id=None,
        certificate_file=str(lab.creds_dir / CLIENT_P12_FILE),
        certificate_password=CERT_PASSWORD,
    )
    assert provider.bundle_id == BUNDLE_ID
    tokens = [_token() for _ in range(3)]
    results = await provider.send_batch(_rendered(), [Target(str(i), t) for i, t in enumerate(tokens)])
    assert {r.outcome for r in results} == {Outcome.SENT}
    items = lab.ledger("apns")["items"]
    assert {i["auth"] for i in items} == {"certificate"} and {i["token"] for i in items} == set(tokens)


async def test_without_credentials_apns_answers_missing_provider_token(direct: Any, lab: Lab) -> None:
    """Over h2c there is no client certificate: a request without a JWT is refused."""
    provider = await direct()
    provider.signer = None
    results = await provider.send_batch(_rendered(), [Target("a", _token(), "sandbox")])
    assert (results[0].outcome, results[0].error_code) == (Outcome.CREDENTIAL, "MissingProviderToken")


async def test_topic_of_another_app_is_refused(direct: Any, lab: Lab) -> None:
    """The token-auth key covers the team's bundle id only: another app's topic is ``BadTopic``."""
    other = await direct(bundle_id="com.other.app")
    [refused] = await other.send_batch(_rendered(), [Target("a", _token())])
    assert (refused.outcome, refused.error_code) == (Outcome.PAYLOAD, "BadTopic")
    assert lab.ledger("apns")["total"] == 0
    [sent] = await (await direct()).send_batch(_rendered(), [Target("b", _token())])
    assert sent.outcome is Outcome.SENT
    assert [i["headers"]["apns-topic"] for i in lab.ledger("apns")["items"]] == [BUNDLE_ID]
