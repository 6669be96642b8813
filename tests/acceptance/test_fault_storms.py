"""Issue 4, acceptance 1 and 2: fault storms and credential revocation, through the gateway and the lab.

1. 20% of tokens terminal, 10% answering 429 with Retry-After twice, and a run of 503s (the
   issue's 30 s; 15 s here, see ``STORM_SECONDS``) from one provider for one app: every device
   ends with the right outcome, only the terminal ones are pruned, attempts match what the lab
   answered and the ladder's timing, and the quarantined pair's neighbours (the same app's other
   providers, another app on the same provider) finish while the storm is still on.
2. Credential revocation mid-run: the pair is quarantined, the deliveries that met the refusal
   fail with a credential code (as dead letters), devices stay active, the rest is deferred, and
   restoring the credential resumes it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import httpx
import pytest
from support.api import (
    fcm_token,
    ledger_token,
    paged,
    publish,
    register_fcm,
    register_fcm_batched,
    wait_final,
)
from support.bulk import register_many, subscriptions
from support.gateway import MASTER, gateway_settings, running_gateway
from support.lab import Lab, service_account
from support.wait import wait_for

from pushgate.lab.faults import in_fraction

LADDER = [0.5, 1.0, 2.0, 4.0]
#: The outage's length. The issue's scenario says 30 s; 15 s proves the same: it is still 3-10
#: times what the neighbours need to finish (1-4 s, asserted to be well inside the storm), longer
#: than the whole retry ladder (0.5 + 1 + 2 + 4 s) so attempts reach its last step, and long
#: enough for the breaker to reopen after failed probes up to its longest cooldown (1, 2, 4 s),
#: while without quarantine its 150 tokens would take ~6 attempts each (the bound on hits below
#: allows 150 + 60). The other 15 s only added probes to wait through.
STORM_SECONDS = 15.0
PER_GROUP = 150


def faults(lab: Lab) -> list[dict[str, Any]]:
    with lab.client() as c:
        r = c.get("/faults")
        r.raise_for_status()
        return list(r.json()["items"])


def hits_by_token(lab: Lab) -> dict[str, list[float]]:
    """Every fault answer the lab gave, per (canonical) token, in time order."""
    out: dict[str, list[float]] = {}
    for f in faults(lab):
        for token, times in f["hits"].items():
            out.setdefault(token, []).extend(times)
    return {k: sorted(v) for k, v in out.items()}


async def all_devices(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in await paged(client, "/v1/devices")}


async def deliveries(client: httpx.AsyncClient, publish_id: str) -> dict[str, dict[str, Any]]:
    return {d["device_id"]: d for d in await paged(client, f"/v1/publishes/{publish_id}/deliveries")}


@pytest.mark.timeout(240)
async def test_fault_storm(database_url: str, lab: Lab) -> None:
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_SECRET_KEY=MASTER,
        PUSHGATE_RETRY_LADDER=json.dumps(LADDER),
        PUSHGATE_RETRY_MAX_ATTEMPTS="12",
        PUSHGATE_QUARANTINE_FAILURE_THRESHOLD="5",
        PUSHGATE_QUARANTINE_COOLDOWN="1",
        PUSHGATE_QUARANTINE_MAX_COOLDOWN="4",
        PUSHGATE_ENGINE_BATCH_SIZE="50",
    )
    async with running_gateway(settings) as gw:
        _, key_b = await gw.app.state.services.apps.create("neighbour")
        # Registered through the batch route (the registrations are not what this test is about).
        subs = await asyncio.to_thread(subscriptions, lab, PER_GROUP)
        storm = {"channels": ["storm"]}
        a_devices = await register_many(
            gw,
            [
                {"provider": "fcm", "token": fcm_token(), "platform": "android", **storm}
                for _ in range(PER_GROUP)
            ]
            + [{"provider": "webpush", "token": s, "platform": "web", **storm} for s in subs]
            + [
                {"provider": "apns", "token": secrets.token_hex(32), "platform": "ios", **storm}
                for _ in range(PER_GROUP)
            ],
        )
        async with gw.as_app(key_b) as b:
            r = await b.put("/v1/credentials/fcm", json={"service_account": service_account(lab)})
            assert r.status_code == 200, r.text
            b_devices = await register_many(
                b,
                [
                    {"provider": "fcm", "token": fcm_token(), "platform": "android", "channels": ["calm"]}
                    for _ in range(PER_GROUP)
                ],
            )
        fcm_a = [ledger_token(d) for d in a_devices if d["provider"] == "fcm"]
        # The outage first (it wins over later faults while it lasts), then terminal tokens, then
        # the 429s (tokens in [0.2, 0.3): the terminal fault already answers those under 0.2).
        lab.fault(provider="fcm", tokens=fcm_a, error="503", for_seconds=STORM_SECONDS)
        for p in ("fcm", "webpush", "apns"):
            lab.fault(provider=p, fraction=0.2, error="unregistered")
        for p in ("webpush", "apns"):
            lab.fault(provider=p, fraction=0.3, error="429", retry_after=1, times=2)
        storm_started = time.time()

        pub_a = await publish(gw.client, recipients=[{"type": "channel", "channel": "storm"}])
        async with gw.as_app(key_b) as b:
            pub_b = await publish(b, recipients=[{"type": "channel", "channel": "calm"}])
            # The neighbours keep going while the storm is on: app B on the same provider, and
            # app A's other providers.
            status_b = await wait_final(b, pub_b, 15, interval=0.2)
            assert time.time() - storm_started < STORM_SECONDS - 5
            assert status_b["counts"]["sent"] + status_b["counts"]["invalid_token"] == PER_GROUP
            assert status_b["counts"]["failed"] == 0 and status_b["counts"]["retrying"] == 0
            health_b = {p["provider"]: p for p in (await b.get("/v1/health/providers")).json()["providers"]}
            assert health_b["fcm"]["quarantine"]["state"] == "closed"

        async def neighbours_done() -> dict[str, dict[str, Any]] | None:
            current = await deliveries(gw.client, pub_a)
            others = [d for d in current.values() if d["provider"] != "fcm"]
            done = len(others) == 2 * PER_GROUP and all(
                d["status"] in ("sent", "invalid_token") for d in others
            )
            return current if done else None

        current = await wait_for(
            neighbours_done,
            15,
            "app A's webpush/apns deliveries to finish during the fcm storm",
            interval=0.3,
        )
        assert time.time() - storm_started < STORM_SECONDS - 3, "the neighbours were held up by the storm"
        fcm_now = [d for d in current.values() if d["provider"] == "fcm"]
        assert sum(d["status"] == "sent" for d in fcm_now) == 0, "fcm of app A is in an outage"
        health = {p["provider"]: p for p in (await gw.client.get("/v1/health/providers")).json()["providers"]}
        assert health["fcm"]["quarantine"]["state"] in ("open", "half_open")
        assert health["fcm"]["quarantine"]["reason"]["error_class"] == "provider_transient"
        assert health["fcm"]["recent"]["provider_transient"] >= 5
        assert health["webpush"]["quarantine"]["state"] == "closed"
        assert health["apns"]["quarantine"]["state"] == "closed"
        assert health["webpush"]["recent"]["quota"] > 0 and health["apns"]["recent"]["device_transient"] > 0

        status_a = await wait_final(gw.client, pub_a, STORM_SECONDS + 40, interval=0.2)
        assert time.time() - storm_started >= STORM_SECONDS
        final = await deliveries(gw.client, pub_a)
        hits = hits_by_token(lab)
        devices_now = await all_devices(gw.client)

        terminal = {d["id"] for d in a_devices if in_fraction(ledger_token(d), 0.2)}
        throttled = {
            d["id"]
            for d in a_devices
            if d["provider"] != "fcm"
            and not in_fraction(ledger_token(d), 0.2)
            and in_fraction(ledger_token(d), 0.3)
        }
        assert terminal and throttled
        for d in a_devices:
            rec = final[d["id"]]
            token_hits = hits.get(ledger_token(d), [])
            if d["id"] in terminal:
                assert rec["status"] == "invalid_token", rec
                assert rec["error_class"] == "device_terminal"
                assert devices_now[d["id"]]["status"] == "invalid"
                # Every attempt is an answer the lab gave: the faults' hits (the last one terminal).
                assert rec["attempts"] == len(token_hits)
            else:
                assert rec["status"] == "sent", rec
                assert devices_now[d["id"]]["status"] == "active", "only terminal tokens are pruned"
                assert rec["attempts"] == len(token_hits) + 1
            if d["id"] in throttled:
                # 429 twice with Retry-After: 1, honoured exactly, then delivered.
                assert rec["attempts"] == 3 and len(token_hits) == 2
                assert token_hits[1] - token_hits[0] >= 0.95
            # No attempt came earlier than its ladder step allows (jitter is +-20%); quarantine
            # may only make the wait longer.
            if d["provider"] == "fcm":
                for i in range(1, len(token_hits)):
                    step = LADDER[min(i, len(LADDER)) - 1]
                    assert token_hits[i] - token_hits[i - 1] >= step * 0.8 - 0.05
        assert status_a["counts"]["failed"] == 0
        assert status_a["counts"]["invalid_token"] == len(terminal)
        assert status_a["counts"]["sent"] == 3 * PER_GROUP - len(terminal)
        # Quarantine spared the outage most requests: no attempts were burned while it was open.
        storm_hits = sum(len(hits.get(t, [])) for t in fcm_a)
        assert storm_hits < PER_GROUP + 60, storm_hits
        # App B's devices: only its own terminal ones are invalid.
        async with gw.as_app(key_b) as b:
            b_now = await all_devices(b)
        for d in b_devices:
            expected = "invalid" if in_fraction(ledger_token(d), 0.2) else "active"
            assert b_now[d["id"]]["status"] == expected
        # The error classes are counted on the metrics too.
        metrics = (await gw.client.get("/metrics")).text
        assert 'pushgate_deliveries_total{error_class="provider_transient",provider="fcm"}' in metrics
        assert 'pushgate_deliveries_total{error_class="quota",provider="webpush"}' in metrics


@pytest.mark.timeout(120)
async def test_credential_revocation_quarantines_then_resumes(database_url: str, lab: Lab) -> None:
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_SECRET_KEY=MASTER,
        PUSHGATE_QUARANTINE_CREDENTIAL_COOLDOWN="30",
        PUSHGATE_ENGINE_BATCH_SIZE="50",
        PUSHGATE_ENGINE_CONCURRENCY="1",
    )
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("revoked")
        async with gw.as_app(key) as c:
            sa_json = service_account(lab)
            assert (await c.put("/v1/credentials/fcm", json={"service_account": sa_json})).status_code == 200
            tokens = await register_fcm_batched(c, "all", 300)
            # The provider starts refusing our credential (a revoked service account).
            lab.fault(provider="fcm", error="auth")
            pub = await publish(c, recipients=[{"type": "channel", "channel": "all"}])

            async def quarantined() -> dict[str, Any] | None:
                health = {p["provider"]: p for p in (await c.get("/v1/health/providers")).json()["providers"]}
                return health if health["fcm"]["quarantine"]["state"] == "open" else None

            health = await wait_for(quarantined, 15, "the pair to be quarantined", interval=0.2)
            q = health["fcm"]["quarantine"]
            assert q["reason"]["error_class"] == "credential" and q["until"]
            await asyncio.sleep(1.0)
            body = (await c.get(f"/v1/publishes/{pub}")).json()
            assert body["status"] == "dispatching"
            recs = await deliveries(c, pub)
            refused = [d for d in recs.values() if d["status"] == "failed"]
            # Only what was in flight when the refusal came back failed; the rest waits.
            assert 1 <= len(refused) <= 100
            assert all(d["error_class"] == "credential" and d["error_code"] for d in refused)
            assert sum(d["status"] in ("pending", "queued", "retrying") for d in recs.values()) >= 200
            assert all(d["status"] == "active" for d in (await all_devices(c)).values())
            assert lab.ledger("fcm")["total"] == 0
            dead = (await c.get("/v1/dead-letters", params={"publish_id": pub})).json()["items"]
            assert {d["recipient_id"] for d in dead} == {d["recipient_id"] for d in refused}

            # The credential is fixed (re-uploaded): the deferred sends resume at once, well
            # before the 30 s cooldown would have ended.
            with lab.client() as lc:
                lc.delete("/faults").raise_for_status()
            restored_at = time.monotonic()
            assert (await c.put("/v1/credentials/fcm", json={"service_account": sa_json})).status_code == 200
            done = await wait_final(c, pub, 20, interval=0.2)
            assert time.monotonic() - restored_at < 15
            assert done["counts"]["sent"] == 300 - len(refused)
            assert done["counts"]["failed"] == len(refused)
            # The refused ones are dead letters: replaying them completes the set.
            r = await c.post("/v1/dead-letters/replay", json={"filter": {"publish_id": pub}})
            assert r.status_code in (200, 202), r.text
            await asyncio.sleep(0.5)
            done = await wait_final(c, pub, 20, interval=0.2)
            assert done["counts"]["sent"] == 300
            assert lab.ledger("fcm")["total"] == 300
            assert {i["token"] for i in lab.ledger("fcm")["items"]} == set(tokens)
            health = {p["provider"]: p for p in (await c.get("/v1/health/providers")).json()["providers"]}
            assert health["fcm"]["quarantine"]["state"] == "closed"


@pytest.mark.timeout(60)
async def test_deferral_past_the_deadline_expires_instead_of_waiting(database_url: str, lab: Lab) -> None:
    """A quarantine longer than the notification's TTL ends the deferred deliveries as expired
    now, so the publish closes instead of staying open for the whole cooldown."""
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_QUARANTINE_CREDENTIAL_COOLDOWN="60",
        PUSHGATE_ENGINE_BATCH_SIZE="50",
        PUSHGATE_ENGINE_CONCURRENCY="1",
    )
    async with running_gateway(settings) as gw:
        await register_fcm_batched(gw, "ttl", 150)
        lab.fault(provider="fcm", error="auth")
        started = time.monotonic()
        pub = await publish(
            gw.client,
            recipients=[{"type": "channel", "channel": "ttl"}],
            notification={"title": "flash sale", "ttl_seconds": 20},
        )
        done = await wait_final(gw.client, pub, 15, interval=0.2)
        assert time.monotonic() - started < 15
        counts = done["counts"]
        assert counts["failed"] >= 1 and counts["expired"] >= 50
        assert counts["failed"] + counts["expired"] == 150 and counts["sent"] == 0
        recs = await deliveries(gw.client, pub)
        assert {d["error_class"] for d in recs.values() if d["status"] == "expired"} == {None}


@pytest.mark.timeout(60)
async def test_refusals_of_a_replaced_credential_do_not_park_the_pair(database_url: str, lab: Lab) -> None:
    """A chunk in flight with the old credential when a new one is uploaded: its refusals are
    recorded (dead letters) but do not quarantine the pair the upload just cleared."""
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_SECRET_KEY=MASTER,
        PUSHGATE_QUARANTINE_CREDENTIAL_COOLDOWN="60",
        PUSHGATE_ENGINE_CONCURRENCY="1",
    )
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("rotating")
        async with gw.as_app(key) as c:
            sa_json = service_account(lab)
            assert (await c.put("/v1/credentials/fcm", json={"service_account": sa_json})).status_code == 200
            await register_fcm(c, 5, "slow")
            lab.fault(provider="fcm", error="auth", latency_ms=1500)
            pub = await publish(c, recipients=[{"type": "channel", "channel": "slow"}])
            await asyncio.sleep(0.5)  # the chunk is waiting for the lab's (refusing) answers
            assert (await c.put("/v1/credentials/fcm", json={"service_account": sa_json})).status_code == 200
            done = await wait_final(c, pub, 20, interval=0.2)
            assert done["counts"]["failed"] == 5
            recs = await deliveries(c, pub)
            assert {d["error_class"] for d in recs.values()} == {"credential"}
            health = {p["provider"]: p for p in (await c.get("/v1/health/providers")).json()["providers"]}
            assert health["fcm"]["quarantine"]["state"] == "closed"
            assert health["fcm"]["recent"]["credential"] == 5
            # So the next publish goes out at once instead of waiting out a 60 s quarantine.
            with lab.client() as lc:
                lc.delete("/faults").raise_for_status()
            again = await publish(c, recipients=[{"type": "channel", "channel": "slow"}])
            assert (await wait_final(c, again, 10, interval=0.2))["counts"]["sent"] == 5
