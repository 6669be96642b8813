"""Engine promises that a mutation pass found unguarded (issue 8, item 5).

Each test drives the real gateway over HTTP against the provider lab (with its faults) and the
real database, and asserts what a user of pushgate would see: what the lab received, what the
publish's counts and deliveries say, what admission answers. Each was written against a mutant
that the rest of the suite let live (the guard it names removed, every other test passing).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import secrets
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from support.api import fcm_token, publish, publish_status, register, register_fcm_batched
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.store.db import Database
from pushgate.store.schema import jobs


async def _device(client: httpx.AsyncClient, channel: str) -> dict[str, Any]:
    return await register(client, provider="fcm", token=fcm_token(), platform="android", channels=[channel])


async def _publish(client: httpx.AsyncClient, channel: str, **notification: Any) -> str:
    recipients = [{"type": "channel", "channel": channel}]
    return await publish(client, recipients=recipients, notification={"title": "hi", **notification})


async def _fcm_quarantine(client: httpx.AsyncClient) -> dict[str, Any]:
    health = (await client.get("/v1/health/providers")).json()["providers"]
    return dict(next(p for p in health if p["provider"] == "fcm")["quarantine"])


async def _wait_quarantined(client: httpx.AsyncClient, within: float = 15.0) -> None:
    async def quarantined() -> bool:
        return (await _fcm_quarantine(client))["state"] == "open"

    await wait_for(quarantined, within, "the (app, fcm) pair to be quarantined", interval=0.1)


def _arrivals(lab: Lab, provider: str) -> list[float]:
    """When the lab recorded each delivery (it records after any injected latency)."""
    items = lab.ledger(provider)["items"]
    return sorted(datetime.fromisoformat(i["received_at"].replace("Z", "+00:00")).timestamp() for i in items)


# ---- a re-claimed batch ----------------------------------------------------------------------


async def test_reclaimed_batch_does_not_resend_recipients_already_final(gateway: Gateway, lab: Lab) -> None:
    """A batch claimed a second time (its first run's worker died, or an older copy of the job
    was left behind) must skip the recipients that already have a final outcome: they were
    delivered, and sending again would be a duplicate push on the user's phone.

    The publish is kept open by a third device the lab answers ``503`` with a long
    ``Retry-After``, so the dispatcher reaches the re-run filter instead of dropping the job
    because its publish is closed."""
    sent = [await _device(gateway.client, "c") for _ in range(2)]
    waiting = await _device(gateway.client, "c")
    lab.fault(provider="fcm", tokens=[waiting["token"]], error="503", retry_after=60)
    pub_id = await _publish(gateway.client, "c")

    async def two_sent() -> dict[str, Any] | None:
        body = await publish_status(gateway.client, pub_id)
        return body if body["counts"]["sent"] >= 2 else None

    body = await wait_for(two_sent, 15, "the two healthy devices to be sent")
    assert body["status"] == "dispatching" and body["counts"]["retrying"] == 1
    assert lab.ledger("fcm")["total"] == 2

    services = gateway.app.state.services
    db: Database = services.db
    app = await services.apps.get_by_name("default")
    async with db.write() as conn:
        job_id = (
            await conn.execute(
                sa.insert(jobs)
                .values(
                    kind="dispatch",
                    app_id=app.id,
                    publish_id=pub_id,
                    payload=json.dumps(
                        {"provider": "fcm", "attempt": 1, "targets": [[d["id"], d["token"]] for d in sent]}
                    ),
                    run_at=time.time(),
                    claims=1,
                    created_at=time.time(),
                )
                .returning(jobs.c.id)
            )
        ).scalar_one()
    services.engine.notify()

    async def job_gone() -> bool:
        async with db.read() as conn:
            return (await conn.execute(sa.select(jobs.c.id).where(jobs.c.id == job_id))).first() is None

    await wait_for(job_gone, 15, "the re-claimed job to run")

    for d in sent:
        assert lab.ledger("fcm", token=d["token"])["total"] == 1, "a final recipient was sent again"
    body = await publish_status(gateway.client, pub_id)
    assert body["counts"]["sent"] == 2 and body["counts"]["planned"] == 3
    await gateway.client.post(f"/v1/publishes/{pub_id}/cancel")


# ---- cancel between chunks --------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_cancel_stops_a_batch_between_its_chunks(gateway: Gateway, lab: Lab) -> None:
    """One batch of 500 goes out 100 targets a provider round. A cancel that lands while the
    first rounds are out stops the batch before its last round: the rest is recorded
    ``cancelled`` and never reaches the provider."""
    n = 500  # one batch (engine.batch_size 500), five chunks
    await register_fcm_batched(gateway.client, "big", n)
    lab.fault(provider="fcm", latency_ms=600)  # each round takes >= 0.6 s at the lab
    pub_id = await _publish(gateway.client, "big")
    # The first round has been answered (the ledger is read in a thread: the lab client blocks).
    await wait_for(
        lambda: asyncio.to_thread(lambda: lab.ledger("fcm")["total"] >= 100), 30, "the first chunk"
    )
    r = await gateway.client.post(f"/v1/publishes/{pub_id}/cancel")
    assert r.status_code == 200, r.text
    await gateway.wait_done(pub_id, within=30)
    # Wait until nothing more arrives for over three rounds' time: a batch still going would land
    # a round every 0.6 s.
    received = lab.ledger("fcm")["total"]
    while True:
        await asyncio.sleep(2.0)
        if (now := lab.ledger("fcm")["total"]) == received:
            break
        received = now
    done = await publish_status(gateway.client, pub_id)  # what was in flight is recorded as sent
    c = done["counts"]
    assert done["status"] == "cancelled"
    assert received < n, "every chunk was sent after the cancel"
    assert c["sent"] == received and c["cancelled"] == n - received
    assert c["sent"] + c["cancelled"] == c["planned"] == n


# ---- dead-letter replay ----------------------------------------------------------------------


async def test_replay_skips_a_dead_letter_whose_device_became_invalid(database_url: str, lab: Lab) -> None:
    """A dead letter waits for the provider to recover; if meanwhile its device's token was
    rejected as invalid (by a later publish), replaying must skip it: the token is known dead."""
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_RETRY_MAX_ATTEMPTS="1")
    async with running_gateway(settings) as gw:
        gone = await _device(gw.client, "a")
        alive = await _device(gw.client, "a")
        lab.fault(provider="fcm", tokens=[gone["token"], alive["token"]], error="503")
        first = await _publish(gw.client, "a")
        assert (await gw.wait_done(first))["counts"]["failed"] == 2
        lab.reset()
        # A later publish learns that one token is dead: the device is marked invalid.
        lab.fault(provider="fcm", tokens=[gone["token"]], error="unregistered")
        later = await _publish(gw.client, "a")
        assert (await gw.wait_done(later))["counts"]["invalid_token"] == 1
        device = (await gw.client.get(f"/v1/devices/{gone['id']}")).json()["device"]
        assert device["status"] == "invalid"
        lab.reset()

        r = await gw.client.post("/v1/dead-letters/replay", json={"filter": {"publish_id": first}})
        assert r.status_code == 200, r.text
        assert r.json() == {"replayed": 1, "skipped": 1}
        await gw.wait_done(first)
        await asyncio.sleep(0.3)
        assert lab.ledger("fcm", token=gone["token"])["total"] == 0
        assert lab.ledger("fcm", token=alive["token"])["total"] == 1


# ---- per-app rate limits ---------------------------------------------------------------------


async def test_an_apps_own_rate_limit_applies(database_url: str, lab: Lab, tmp_path: pathlib.Path) -> None:
    """``[apps.<name>.rate_limits]`` overrides the global rates: with no global limit, an app
    limited to 10 FCM pushes a second cannot get 30 pushes out in less than ~2 s (10 at once,
    then 10 a second)."""
    lab.reset()
    limited = Lab(url=lab.url, creds_dir=tmp_path)  # the lab's config plus the app's section
    limited.toml.write_text(lab.toml.read_text() + "\n[apps.default.rate_limits]\nfcm_per_second = 10\n")
    settings = gateway_settings(database_url, limited)
    assert settings.rate_limits.provider_rate("fcm") == 0  # no global limit: only the app's applies
    async with running_gateway(settings) as gw:
        await register_fcm_batched(gw.client, "slow", 30)
        done = await gw.wait_done(await _publish(gw.client, "slow"), within=30)
        assert done["counts"]["sent"] == 30
        times = _arrivals(lab, "fcm")
        assert len(times) == 30
        assert times[-1] - times[0] >= 1.8, "the app's own fcm_per_second was not applied"


# ---- retry.max_age_seconds -------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_deferral_past_max_age_fails_the_rest_as_dead_letters(database_url: str, lab: Lab) -> None:
    """A pair quarantined for longer than ``retry.max_age_seconds`` allows gives up on the
    deferred deliveries now (``failed``, ``deferred_too_long``, replayable dead letters) instead
    of keeping the publish open for the whole cooldown."""
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_QUARANTINE_CREDENTIAL_COOLDOWN="60",
        PUSHGATE_RETRY_MAX_AGE_SECONDS="5",
        PUSHGATE_ENGINE_BATCH_SIZE="50",
        PUSHGATE_ENGINE_CONCURRENCY="1",
    )
    async with running_gateway(settings) as gw:
        await register_fcm_batched(gw.client, "old", 150)
        lab.fault(provider="fcm", error="auth")  # the first chunk's refusals open the breaker
        pub = await _publish(gw.client, "old")
        done = await gw.wait_done(pub, within=20)
        c = done["counts"]
        assert c["failed"] == 150 and c["sent"] == 0 and c["retrying"] == 0
        recs = await gw.deliveries(pub)
        too_old = [d for d in recs if d["error_code"] == "deferred_too_long"]
        refused = [d for d in recs if d["error_class"] == "credential"]
        assert len(too_old) >= 50 and len(too_old) + len(refused) == 150
        assert all(d["status"] == "failed" and d["error_class"] is None for d in too_old)
        dead = (await gw.client.get("/v1/dead-letters", params={"publish_id": pub, "limit": 1000})).json()
        assert {d["recipient_id"] for d in too_old} <= {d["recipient_id"] for d in dead["items"]}


# ---- FCM sends a chunk concurrently ----------------------------------------------------------


async def test_fcm_sends_a_chunks_messages_concurrently(gateway: Gateway, lab: Lab) -> None:
    """FCM v1 takes one message per request, so a chunk's messages must be in flight together.
    The lab holds every request for 1.5 s before it records it: requests sent one after another
    would be recorded at least 1.5 s apart, requests in flight together within one hold."""
    hold = 1.5
    await register_fcm_batched(gateway.client, "fan", 20)
    lab.fault(provider="fcm", latency_ms=int(hold * 1000))
    done = await gateway.wait_done(await _publish(gateway.client, "fan"), within=60)
    assert done["counts"]["sent"] == 20
    times = _arrivals(lab, "fcm")
    assert len(times) == 20
    assert times[-1] - times[0] < hold, "the chunk's requests did not overlap: FCM sends were serialised"


# ---- backpressure and quarantine -------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_batches_waiting_out_a_quarantine_do_not_trigger_backpressure(
    database_url: str, lab: Lab
) -> None:
    """Batches parked behind a quarantined pair are not a backlog the workers are behind on:
    counting them would turn one app's broken credential into 429s for every publish."""
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_QUARANTINE_CREDENTIAL_COOLDOWN="60",
        PUSHGATE_LIMITS_MAX_QUEUE_DEPTH="2",
        PUSHGATE_ENGINE_BATCH_SIZE="10",
        PUSHGATE_ENGINE_CONCURRENCY="1",
    )
    async with running_gateway(settings) as gw:
        await register_fcm_batched(gw.client, "parked", 50)  # five batches
        lab.fault(provider="fcm", error="auth")
        pub = await _publish(gw.client, "parked")
        await _wait_quarantined(gw.client)

        async def parked() -> dict[str, Any] | None:
            body = await publish_status(gw.client, pub)
            return body if body["counts"]["failed"] == 10 and body["status"] == "dispatching" else None

        # The first batch failed on the refusal; the other four wait out the quarantine.
        await wait_for(parked, 15, "one batch failed and four parked", interval=0.1)
        await asyncio.sleep(1.5)  # admission re-measures the queue at most once a second
        ready = await gw.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.json()
        r = await gw.client.post(
            "/v1/publish",
            json={"recipients": [{"type": "channel", "channel": "nobody"}], "notification": {"title": "x"}},
        )
        assert r.status_code == 202, r.text
        assert (await publish_status(gw.client, pub))["counts"]["failed"] == 10  # still parked
        await gw.client.post(f"/v1/publishes/{pub}/cancel")


async def test_dead_letter_of_a_provider_audience_is_replayed(database_url: str, lab: Lab) -> None:
    """An FCM topic is no device: its dead letter's target comes back from the publish's own
    request, so a replay once the provider recovers sends to the topic again."""
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_RETRY_MAX_ATTEMPTS="1")
    async with running_gateway(settings) as gw:
        lab.fault(provider="fcm", error="503")
        r = await gw.client.post(
            "/v1/publish",
            json={
                "recipients": [{"type": "fcm_topic", "topic": "news"}],
                "notification": {"title": "Extra!"},
            },
        )
        assert r.status_code == 202, r.text
        pub_id = r.json()["publish_id"]
        assert (await gw.wait_done(pub_id))["counts"]["failed"] == 1
        lab.reset()
        r = await gw.client.post("/v1/dead-letters/replay", json={"filter": {"publish_id": pub_id}})
        assert r.status_code == 200, r.text
        assert r.json() == {"replayed": 1, "skipped": 0}
        body = await gw.wait_done(pub_id)
        assert (body["counts"]["sent"], body["counts"]["failed"]) == (1, 0)
        [item] = lab.ledger("fcm")["items"]
        assert item["message"]["topic"] == "news" and "token" not in item["message"]


async def test_replay_keeps_an_apns_devices_environment(database_url: str, lab: Lab) -> None:
    """A sandbox device's dead letter is replayed to the APNs sandbox, where its token is valid:
    the production host would answer ``BadDeviceToken``. (The lab serves the sandbox over
    cleartext h2c and production over TLS, so the ledger shows which host was used.)"""
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_RETRY_MAX_ATTEMPTS="1")
    async with running_gateway(settings) as gw:
        token = secrets.token_hex(32)
        r = await gw.client.post(
            "/v1/devices",
            json={
                "provider": "apns",
                "token": token,
                "platform": "ios",
                "environment": "sandbox",
                "channels": ["b"],
            },
        )
        assert r.status_code == 200, r.text
        lab.fault(provider="apns", error="503")
        pub_id = await _publish(gw.client, "b")
        assert (await gw.wait_done(pub_id))["counts"]["failed"] == 1
        lab.reset()
        r = await gw.client.post("/v1/dead-letters/replay", json={"filter": {"publish_id": pub_id}})
        assert r.json() == {"replayed": 1, "skipped": 0}
        assert (await gw.wait_done(pub_id))["counts"]["sent"] == 1
        [item] = lab.ledger("apns")["items"]
        assert item["token"] == token and item["transport"] == "h2c"


@pytest.mark.timeout(60)
async def test_a_breaker_opening_mid_batch_gives_up_on_the_rest_past_max_age(
    database_url: str, lab: Lab
) -> None:
    """A batch of 300 goes out in chunks of 100. When the first chunk's refusals open the
    breaker for longer than ``retry.max_age_seconds`` allows, the batch's other 200 end now as
    ``deferred_too_long`` dead letters instead of waiting out the cooldown."""
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_QUARANTINE_CREDENTIAL_COOLDOWN="60",
        PUSHGATE_RETRY_MAX_AGE_SECONDS="5",
        PUSHGATE_ENGINE_CONCURRENCY="1",
    )
    async with running_gateway(settings) as gw:
        await register_fcm_batched(gw.client, "mid", 300)  # one batch (engine.batch_size 500), three chunks
        lab.fault(provider="fcm", error="auth")
        pub = await _publish(gw.client, "mid")
        done = await gw.wait_done(pub, within=20)
        assert done["counts"]["failed"] == 300
        recs = await gw.deliveries(pub)
        by_code = {d["error_code"] for d in recs if d["error_class"] is None}
        refused = [d for d in recs if d["error_class"] == "credential"]
        assert len(refused) == 100 and by_code == {"deferred_too_long"}
        assert lab.ledger("fcm")["total"] == 0
