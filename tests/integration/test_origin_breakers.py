"""Breakers that match the failure's scope (issue 9, item 4), through the gateway and the lab.

Web Push devices name their own push service. The lab serves two push-service origins (its
HTTP/2 listener and its HTTP/1.1 one); a hostile subscription on the second answers 403. That
used to open the app's whole Web Push breaker for the credential cooldown (a publish to other
subscribers waited 58 s); now it opens that origin only.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from support.api import endpoint, publish, register
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.store.db import Database
from pushgate.store.schema import jobs

#: Long enough that a breaker on the whole provider would visibly hold the good subscribers.
COOLDOWN = "60"


async def _webpush_health(gw: Gateway) -> dict[str, Any]:
    r = await gw.client.get("/v1/health/providers")
    r.raise_for_status()
    [entry] = [p for p in r.json()["providers"] if p["provider"] == "webpush"]
    return dict(entry)


def _origin(device: dict[str, Any]) -> str:
    scheme, rest = endpoint(device).split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def test_a_hostile_origin_parks_only_its_own_devices(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_QUARANTINE_CREDENTIAL_COOLDOWN=COOLDOWN,
        PUSHGATE_QUARANTINE_COOLDOWN=COOLDOWN,
        PUSHGATE_QUARANTINE_MAX_COOLDOWN="600",
    )
    async with running_gateway(settings) as gw:
        good = [
            await register(
                gw, provider="webpush", token=lab.subscription(), platform="web", channels=["scope"]
            )
            for _ in range(20)
        ]
        hostile = await register(
            gw, provider="webpush", token=lab.subscription("http1"), platform="web", channels=["scope"]
        )
        assert _origin(hostile) != _origin(good[0])
        lab.fault(provider="webpush", tokens=[endpoint(hostile)], error="auth")

        # The hostile subscription answers 403 first: its origin opens, the provider does not.
        first = await publish(gw.client, recipients=[{"type": "device", "device_id": hostile["id"]}])
        done = await gw.wait_done(first, within=10)
        assert done["counts"]["failed"] == 1
        health = await _webpush_health(gw)
        assert health["quarantine"]["state"] == "closed", health
        [origin] = health["origins"]
        assert origin["origin"] == _origin(hostile)
        assert origin["quarantine"]["state"] == "open"
        assert origin["quarantine"]["reason"]["error_class"] == "credential"
        assert origin["quarantine"]["cooldown_seconds"] == float(COOLDOWN)

        # A publish to everyone: the 20 on the healthy origin are sent at once, exactly once.
        second = await publish(gw.client, recipients=[{"type": "channel", "channel": "scope"}])

        async def all_sent() -> dict[str, dict[str, Any]] | None:
            records = {r["device_id"]: r for r in await gw.deliveries(second)}
            sent = {records.get(d["id"], {}).get("status") for d in good} == {"sent"}
            return records if sent else None

        records = await wait_for(all_sent, 5, "the 20 subscribers on the healthy origin to be sent to")
        # The hostile one waits out its origin's cooldown (no attempt spent, no probe sent).
        assert (records[hostile["id"]]["status"], records[hostile["id"]]["attempts"]) == ("pending", 0)
        assert len(lab.faults()[-1]["hits"][endpoint(hostile)]) == 1
        # It waits as a job of its own, marked as waiting out a quarantine (so it is woken when
        # the credential is replaced, and does not count as queue pressure).
        db: Database = gw.app.state.services.db
        async with db.read() as conn:
            held = (await conn.execute(sa.select(jobs).where(jobs.c.publish_id == second))).all()
        assert [(j.deferred_by, len(msgspec.json.decode(j.payload)["targets"])) for j in held] == [
            ("webpush", 1)
        ]
        assert held[0].run_at > time.time() + 30
        health = await _webpush_health(gw)
        assert health["quarantine"]["state"] == "closed"
        assert [(o["origin"], o["quarantine"]["state"]) for o in health["origins"]] == [
            (_origin(hostile), "open")
        ]
        assert all(lab.ledger("webpush", endpoint(d))["total"] == 1 for d in good)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_other_providers_report_no_origins(database_url: str, lab: Lab) -> None:
    async with running_gateway(gateway_settings(database_url, lab)) as gw:
        r = await gw.client.get("/v1/health/providers")
        origins = {p["provider"]: p["origins"] for p in r.json()["providers"]}
        assert origins == {
            "apns": None,
            "fcm": None,
            "hms": None,
            "mipush": None,
            "webpush": [],
            "wns": [],
        }


async def test_the_probe_goes_to_another_target_than_the_one_that_failed(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_QUARANTINE_FAILURE_THRESHOLD="1",
        PUSHGATE_QUARANTINE_COOLDOWN="0.5",
        PUSHGATE_QUARANTINE_MAX_COOLDOWN="5",
        PUSHGATE_RETRY_MAX_ATTEMPTS="1",
    )
    async with running_gateway(settings) as gw:
        # Both on the lab's second push-service origin; the first always answers 500.
        bad, good = [
            await register(gw, provider="webpush", token=lab.subscription("http1"), platform="web")
            for _ in range(2)
        ]
        lab.fault(provider="webpush", tokens=[endpoint(bad)], error="500")
        first = await publish(gw.client, recipients=[{"type": "device", "device_id": bad["id"]}])
        await gw.wait_done(first, within=10)
        [origin] = (await _webpush_health(gw))["origins"]
        assert origin["quarantine"]["state"] == "open"

        await asyncio.sleep(0.6)  # the cooldown is over: the next chunk for the origin probes
        both = [{"type": "device", "device_id": d["id"]} for d in (bad, good)]
        second = await publish(gw.client, recipients=both)
        await gw.wait_done(second, within=10)

        # The probe was the healthy subscription: it closed the origin, and only then was the
        # failing one sent again (had it probed, it would have re-opened the origin for 1 s
        # and the healthy one would have waited that long).
        [item] = lab.ledger("webpush", endpoint(good))["items"]
        good_at = datetime.fromisoformat(item["received_at"]).timestamp()
        bad_hits = lab.faults()[-1]["hits"][endpoint(bad)]
        assert len(bad_hits) == 2
        assert good_at < bad_hits[1], (good_at, bad_hits)
