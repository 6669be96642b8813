"""Fair tenants and renewed leases (issue 9, items 5 and 11), through the gateway and the lab.

Two apps share one gateway: ``B`` (the default app) holds a backlog of dispatch batches, ``A``
(a second app with the lab's FCM credentials uploaded) publishes to one device. Claims take the
apps in turn and backpressure measures each app's own queue, so B's backlog neither delays A's
publish behind it nor turns A's publishes into 429s. Both databases.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from support.api import fcm_token, publish, publish_status, register, register_fcm_batched, wait_final
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab, service_account
from support.wait import wait_for

from pushgate.config import AppQueueLimits, AppSection

#: B's backlog: publishes to a channel of this many devices, cut in batches of ``BATCH``.
DEVICES, BATCH = 1000, 50
BACKLOG_PUBLISHES = 6


@asynccontextmanager
async def two_tenants(database_url: str, lab: Lab, **env: str) -> AsyncIterator[tuple[Gateway, Any]]:
    """A gateway whose default app is B, and a client of a second app A with FCM credentials."""
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER, **env)
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("tenant-a")
        async with gw.as_app(key) as a:
            r = await a.put("/v1/credentials/fcm", json={"service_account": service_account(lab)})
            assert r.status_code == 200, r.text
            yield gw, a


async def planned(client: httpx.AsyncClient, publish_ids: list[str], each: int) -> None:
    """Wait until every publish has planned ``each`` recipients: its whole backlog is queued."""

    async def done() -> bool:
        bodies = [await publish_status(client, p) for p in publish_ids]
        return all(b["counts"]["planned"] == each for b in bodies)

    await wait_for(done, 30, "B's publishes to be planned", interval=0.05)


async def unsent(client: httpx.AsyncClient, publish_ids: list[str], each: int) -> int:
    """B's recipients without a final outcome yet."""
    total = 0
    for p in publish_ids:
        c = (await publish_status(client, p))["counts"]
        total += each - c["sent"] - c["failed"] - c["invalid_token"] - c["expired"] - c["cancelled"]
    return total


async def one_device_of_a(a: httpx.AsyncClient) -> str:
    device = await register(a, provider="fcm", token=fcm_token(), platform="android")
    return str(device["id"])


@pytest.mark.timeout(90)
async def test_one_apps_backlog_does_not_delay_another_apps_publish(database_url: str, lab: Lab) -> None:
    """Reproduced: app B's backlog made app A's one-device publish wait until B's batches queued
    before it were all claimed (11.9 s instead of 0.22 s at 200k deliveries).

    B's 6,000 deliveries are queued (120 batches, each held 100 ms by the lab) before A
    publishes. A's publish must be sent while most of what B had left is still queued: with one
    global ``run_at`` order it was sent only after B's last earlier batch was claimed.
    """
    async with two_tenants(
        database_url, lab, PUSHGATE_ENGINE_BATCH_SIZE=str(BATCH), PUSHGATE_ENGINE_CONCURRENCY="2"
    ) as (gw, a):
        device_id = await one_device_of_a(a)
        await register_fcm_batched(gw.client, "backlog", DEVICES)
        lab.fault(provider="fcm", latency_ms=100)
        body = {"recipients": [{"type": "channel", "channel": "backlog"}]}
        backlog = [await publish(gw.client, **body) for _ in range(BACKLOG_PUBLISHES)]
        await planned(gw.client, backlog, DEVICES)
        before = await unsent(gw.client, backlog, DEVICES)

        mine = await publish(a, recipients=[{"type": "device", "device_id": device_id}])
        status = await wait_final(a, mine, within=60, interval=0.02)
        left = await unsent(gw.client, backlog, DEVICES)

        assert status["status"] == "completed" and status["counts"]["sent"] == 1, status
        print(f"\nB unsent when A published: {before}; when A's publish completed: {left}")
        assert before >= DEVICES, f"B's backlog drained before A published ({before} left): test too small"
        assert left > before // 2, f"A's publish waited for B's backlog: {before} → {left} unsent"
        for p in backlog:
            await gw.client.post(f"/v1/publishes/{p}/cancel")


@pytest.mark.timeout(60)
async def test_an_idle_app_does_not_wait_for_the_batch_every_worker_has_in_hand(
    database_url: str, lab: Lab
) -> None:
    """Taking turns still left A waiting for a worker to finish the batch it had in hand (the
    figure that matters at p99 when batches take seconds): a worker kept for idle apps serves A
    while every other worker is busy with B."""
    async with two_tenants(
        database_url, lab, PUSHGATE_ENGINE_BATCH_SIZE=str(BATCH), PUSHGATE_ENGINE_CONCURRENCY="1"
    ) as (gw, a):
        device_id = await one_device_of_a(a)
        tokens = await register_fcm_batched(gw.client, "slow", BATCH)
        lab.fault(provider="fcm", tokens=tokens, latency_ms=4000)  # B's one batch takes 4 s
        slow = await publish(gw.client, recipients=[{"type": "channel", "channel": "slow"}])
        await planned(gw.client, [slow], BATCH)  # the only worker now sends B's batch

        mine = await publish(a, recipients=[{"type": "device", "device_id": device_id}])
        status = await wait_final(a, mine, within=30, interval=0.02)
        b = await publish_status(gw.client, slow)

        assert status["status"] == "completed" and status["counts"]["sent"] == 1, status
        assert b["status"] == "dispatching" and b["counts"]["sent"] == 0, f"A waited for B's batch: {b}"
        assert (await gw.wait_done(slow, within=30))["counts"]["sent"] == BATCH


@pytest.mark.timeout(90)
async def test_backpressure_refuses_the_backlogged_app_only(database_url: str, lab: Lab) -> None:
    """Reproduced: with a low ``limits.max_queue_depth``, B's backlog turned every one of A's
    publishes into 429. The depth is now each app's own: B is refused, A is accepted and sent."""
    async with two_tenants(
        database_url,
        lab,
        PUSHGATE_LIMITS_MAX_QUEUE_DEPTH="5",
        PUSHGATE_ENGINE_BATCH_SIZE=str(BATCH),
        PUSHGATE_ENGINE_CONCURRENCY="1",
    ) as (gw, a):
        device_id = await one_device_of_a(a)
        await register_fcm_batched(gw.client, "backlog", DEVICES)
        lab.fault(provider="fcm", latency_ms=300)
        body = {"recipients": [{"type": "channel", "channel": "backlog"}]}
        backlog = await publish(gw.client, **body)
        await planned(gw.client, [backlog], DEVICES)  # 20 batches of B queued, over the 5 allowed
        await asyncio.sleep(1.1)  # admission measures an app's queue at most once a second

        refused = await gw.client.post("/v1/publish", json={**body, "notification": {"title": "more"}})
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and "limits.max_queue_depth" in error["message"]
        assert int(refused.headers["Retry-After"]) >= 1

        mine = await publish(a, recipients=[{"type": "device", "device_id": device_id}])
        status = await wait_final(a, mine, within=30)
        assert status["status"] == "completed" and status["counts"]["sent"] == 1, status

        # /readyz (not authenticated) says an app is refused, without naming it.
        ready = (await gw.client.get("/readyz")).json()
        assert ready["status"] == "degraded" and "max_queue_depth" in ready["reason"], ready
        b_app = await gw.app.state.services.apps.get_by_name("default")
        assert b_app is not None and b_app.id not in ready["reason"], ready
        await gw.client.post(f"/v1/publishes/{backlog}/cancel")


@pytest.mark.timeout(60)
async def test_an_apps_own_limit_replaces_the_default(database_url: str, lab: Lab) -> None:
    """``[apps.<name>.limits]``: the default app may queue more than ``[limits]`` allows."""
    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_LIMITS_MAX_QUEUE_DEPTH="5", PUSHGATE_ENGINE_BATCH_SIZE=str(BATCH),
        PUSHGATE_ENGINE_CONCURRENCY="1",
    )  # fmt: skip
    settings.apps["default"] = AppSection(limits=AppQueueLimits(max_queue_depth=1000))
    async with running_gateway(settings) as gw:
        await register_fcm_batched(gw.client, "backlog", DEVICES)
        lab.fault(provider="fcm", latency_ms=300)
        body = {"recipients": [{"type": "channel", "channel": "backlog"}]}
        first = await publish(gw.client, **body)
        await planned(gw.client, [first], DEVICES)  # 20 batches: over 5, under the app's 1000
        await asyncio.sleep(1.1)
        second = await gw.client.post("/v1/publish", json={**body, "notification": {"title": "more"}})
        assert second.status_code == 202, second.text
        for p in (first, second.json()["publish_id"]):
            await gw.client.post(f"/v1/publishes/{p}/cancel")


@pytest.mark.timeout(60)
async def test_a_job_slower_than_its_lease_is_not_claimed_again(
    database_url: str, lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """A lease is short (crash recovery waits for it) but renewed while its job runs: a send
    that takes three leases is not claimed by a sibling worker and sent twice."""
    caplog.set_level(logging.WARNING, logger="pushgate.engine")
    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_ENGINE_LEASE_SECONDS="1", PUSHGATE_ENGINE_CONCURRENCY="3"
    )
    async with running_gateway(settings) as gw:
        device = await register(gw, provider="fcm", token=fcm_token(), platform="android")
        lab.fault(provider="fcm", latency_ms=3000)
        pub = await publish(gw.client, recipients=[{"type": "device", "device_id": device["id"]}])
        status = await gw.wait_done(pub, within=30)

        assert status["status"] == "completed" and status["counts"]["sent"] == 1, status
        sends = lab.ledger("fcm", token=device["token"])["items"]
        assert len(sends) == 1, f"sent {len(sends)} times: the lapsed lease was claimed again"
        assert not [r for r in caplog.records if "lease" in r.getMessage()], caplog.text
