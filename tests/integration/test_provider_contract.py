"""The provider contract: what every delivery path promises, checked for all six through a real
gateway and the provider lab.

Each provider used to carry its own copy of these scenarios (terminal tokens, a retryable error,
a refused credential, an oversize payload, a fan-out). They assert one promise, so they live here
once, parametrized by a ``Case`` that holds only what really differs between providers: how a
device token is made, the error codes the provider answers with, whether one request carries
many tokens, and the payload limit. A new provider adds one ``Case``; its module's tests keep
only what is specific to it (wire format, batching, auth details).

The sending scenarios share one gateway per database (``shared``): each test registers its own
devices in its own channels, so they cannot see each other, and a gateway start is most of a
short test's time. The credential scenario gets a fresh gateway, because it quarantines the
provider for the app.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.api import deliveries, device, gather_limited, ledger_token, publish, register
from support.database import KINDS, fresh_database
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab


def _wns_channel(lab: Lab) -> str:
    with lab.client() as c:
        r = c.post("/wns/channels")
        r.raise_for_status()
        return str(r.json()["channel_uri"])


@dataclass(frozen=True)
class Case:
    provider: str
    platform: str
    #: A fresh device token the lab knows (it may have to ask the lab for one).
    token: Callable[[Lab], Any]
    #: ``error_code`` of a delivery the lab refused with its ``unregistered`` answer.
    terminal_code: str
    #: ``error_code`` of a delivery the lab refused with its ``auth`` (credential) answer.
    credential_code: str
    #: One request carries many tokens, so a request-level error retries them all.
    batched: bool
    #: A ``providers`` override whose rendering exceeds the limit, and that limit in bytes.
    oversize: dict[str, Any]
    limit: int
    #: Words one of which the credential error's message names (empty: not checked).
    credential_words: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return self.provider


CASES = [
    Case(
        provider="fcm",
        platform="android",
        token=lambda _lab: "fcm_" + secrets.token_urlsafe(40),
        terminal_code="UNREGISTERED",
        credential_code="THIRD_PARTY_AUTH_ERROR",
        batched=False,
        oversize={"fcm": {"message": {"data": {"blob": "x" * 4100}}}},
        limit=4096,
    ),
    Case(
        provider="webpush",
        platform="web",
        token=lambda lab: lab.subscription(),
        terminal_code="http_410",
        credential_code="http_403",
        batched=False,
        oversize={"webpush": {"payload": {"blob": "x" * 4100}}},
        limit=3993,
    ),
    Case(
        provider="apns",
        platform="ios",
        token=lambda _lab: secrets.token_hex(32),
        terminal_code="Unregistered",
        credential_code="InvalidProviderToken",
        batched=False,
        oversize={"apns": {"payload": {"blob": "x" * 4100}}},
        limit=4096,
    ),
    Case(
        provider="hms",
        platform="android",
        token=lambda _lab: "IQAAAACy0" + secrets.token_urlsafe(60),
        terminal_code="80100000",
        credential_code="80200001",
        batched=True,
        oversize={"hms": {"message": {"data": "x" * 4096}}},
        limit=4096,
    ),
    Case(
        provider="wns",
        platform="windows",
        token=_wns_channel,
        terminal_code="http_410",
        credential_code="http_403",
        batched=False,
        oversize={"wns": {"type": "raw", "body": "x" * 5001}},
        limit=5000,
        credential_words=("package_sid", "authorized"),
    ),
    Case(
        provider="mipush",
        platform="android",
        token=lambda _lab: secrets.token_urlsafe(33) + "/" + secrets.token_hex(4),
        terminal_code="bad_regid",
        credential_code="21301",
        batched=True,
        oversize={"mipush": {"fields": {"payload": "x" * 5000}}},
        limit=4096,
    ),
]

cases = pytest.mark.parametrize("case", CASES, ids=str)


@pytest.fixture(scope="module", params=KINDS)
def shared_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("contract")
    with fresh_database(request.param, directory, lambda: request.getfixturevalue("postgres")) as url:
        yield url


@pytest.fixture(scope="module")
async def shared_gateway(shared_database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(shared_database_url, lab)) as gw:
        yield gw


@pytest.fixture
def shared(shared_gateway: Gateway, lab: Lab) -> Gateway:
    """The module's gateway, with the lab's ledger and faults cleared for this test."""
    lab.reset()
    return shared_gateway


async def devices(gw: Gateway, lab: Lab, case: Case, n: int, channel: str) -> list[dict[str, Any]]:
    """``n`` fresh devices of the case's provider in ``channel``, registered over the API."""
    tokens = await asyncio.to_thread(lambda: [case.token(lab) for _ in range(n)])
    return await gather_limited(
        register(gw, provider=case.provider, token=t, platform=case.platform, channels=[channel])
        for t in tokens
    )


async def send_to(gw: Gateway, channel: str) -> dict[str, Any]:
    """Publish to ``channel`` and return the publish's final status."""
    pub = await publish(gw.client, recipients=[{"type": "channel", "channel": channel}])
    return await gw.wait_done(pub)


def received(lab: Lab, case: Case) -> Counter[str]:
    """How often the lab accepted a push for each token of the case's provider."""
    return Counter(item["token"] for item in lab.ledger(case.provider)["items"])


@cases
async def test_fan_out_reaches_every_device_exactly_once(shared: Gateway, lab: Lab, case: Case) -> None:
    n = 40
    channel = f"{case}-fan-out"
    devs = await devices(shared, lab, case, n, channel)
    status = await send_to(shared, channel)
    assert status["status"] == "completed", status
    assert (status["counts"]["planned"], status["counts"]["sent"]) == (n, n)
    assert status["by_provider"][case.provider]["sent"] == n
    assert received(lab, case) == Counter(ledger_token(d) for d in devs)
    records = await deliveries(shared.client, status["id"])
    assert len(records) == n and {r["device_id"] for r in records} == {d["id"] for d in devs}
    assert all(r["status"] == "sent" and r["attempts"] == 1 and r["sent_at"] for r in records)


@cases
async def test_terminal_token_invalidates_exactly_those_devices(
    shared: Gateway, lab: Lab, case: Case
) -> None:
    channel = f"{case}-terminal"
    devs = await devices(shared, lab, case, 8, channel)
    dead, alive = devs[:3], devs[3:]
    lab.fault(provider=case.provider, tokens=[ledger_token(d) for d in dead], error="unregistered")
    status = await send_to(shared, channel)
    assert (status["counts"]["invalid_token"], status["counts"]["sent"]) == (3, 5), status
    invalid = await deliveries(shared.client, status["id"], status="invalid_token")
    assert {x["device_id"] for x in invalid} == {d["id"] for d in dead}
    assert {x["error_code"] for x in invalid} == {case.terminal_code}
    statuses = [(await device(shared.client, d["id"]))["status"] for d in devs]
    assert statuses == ["invalid"] * 3 + ["active"] * 5
    assert received(lab, case) == Counter(ledger_token(d) for d in alive)

    # The invalid devices are out of the fan-out: the next publish plans only the live ones.
    lab.reset()
    again = await send_to(shared, channel)
    assert (again["counts"]["planned"], again["counts"]["sent"]) == (5, 5), again
    assert received(lab, case) == Counter(ledger_token(d) for d in alive)


@cases
@pytest.mark.parametrize("error", ["500", "503"])
async def test_retryable_error_is_retried_then_delivered(
    shared: Gateway, lab: Lab, case: Case, error: str
) -> None:
    channel = f"{case}-retry-{error}"
    devs = await devices(shared, lab, case, 4, channel)
    lab.fault(provider=case.provider, tokens=[ledger_token(devs[0])], error=error, times=1)
    status = await send_to(shared, channel)
    assert status["status"] == "completed", status
    assert (status["counts"]["sent"], status["counts"]["retrying"]) == (4, 0), status
    attempts = {r["device_id"]: r["attempts"] for r in await deliveries(shared.client, status["id"])}
    # A batched provider's request failed as a whole, so every token in it went twice.
    others = 2 if case.batched else 1
    assert attempts == {d["id"]: 2 if i == 0 else others for i, d in enumerate(devs)}
    assert received(lab, case) == Counter(ledger_token(d) for d in devs)


@cases
async def test_credential_error_keeps_devices_and_quarantines(gateway: Gateway, lab: Lab, case: Case) -> None:
    devs = await devices(gateway, lab, case, 3, "auth")
    lab.fault(provider=case.provider, tokens=[ledger_token(d) for d in devs], error="auth")
    status = await send_to(gateway, "auth")
    assert status["counts"]["failed"] == 3, status
    records = await deliveries(gateway.client, status["id"])
    assert {(r["status"], r["error_code"], r["error_class"]) for r in records} == {
        ("failed", case.credential_code, "credential")
    }
    assert {r["attempts"] for r in records} == {1}  # a refused credential is not retried per device
    if case.credential_words:
        assert all(any(w in r["error_message"] for w in case.credential_words) for r in records)
    assert {(await device(gateway.client, d["id"]))["status"] for d in devs} == {"active"}
    assert lab.ledger(case.provider)["total"] == 0
    health = (await gateway.client.get("/v1/health/providers")).json()["providers"]
    [entry] = [p for p in health if p["provider"] == case.provider]
    quarantine = entry["quarantine"]
    if entry["origins"] is not None:
        # Web Push, WNS: the push service that refused is quarantined, not the app's provider.
        assert quarantine["state"] == "closed", quarantine
        [origin] = entry["origins"]
        quarantine = origin["quarantine"]
    assert quarantine["state"] != "closed", quarantine
    assert quarantine["reason"]["error_class"] == "credential"


@cases
async def test_oversize_payload_is_refused_at_admission(shared: Gateway, lab: Lab, case: Case) -> None:
    channel = f"{case}-oversize"
    await devices(shared, lab, case, 1, channel)
    before = (await shared.client.get("/v1/publishes")).json()["items"]
    r = await shared.client.post(
        "/v1/publish",
        json={
            "recipients": [{"type": "channel", "channel": channel}],
            "notification": {"title": "T"},
            "providers": case.oversize,
        },
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"]["provider"] == case.provider
    assert error["details"]["limit"] == case.limit and error["details"]["size"] > case.limit
    assert (await shared.client.get("/v1/publishes")).json()["items"] == before  # nothing admitted
    assert lab.ledger(case.provider)["total"] == 0
