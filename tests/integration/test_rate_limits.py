"""Rate limits and the invalid-token throttle, through the gateway and the lab: they defer, never drop."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import pytest
from support.api import fcm_token, gather_limited, publish, register, register_fcm
from support.gateway import gateway_settings, running_gateway
from support.lab import Lab

from pushgate.engine.health import REFRESH_SECONDS

#: The least spread between the first and the last arrival for a limit whose sends need 2 s:
#: the clock starts at the first reserve, the spread at the first arrival, which can come
#: ~0.2 s later (the first request fetches the OAuth token; measured 1.79 s once on a loaded
#: machine). Without the limit these pushes all arrive within ~0.3 s.
MIN_SPREAD = 1.5


def _spread(lab: Lab, provider: str) -> float:
    """Seconds between the first and the last delivery the lab received."""
    items = lab.ledger(provider)["items"]
    times = sorted(datetime.fromisoformat(i["received_at"].replace("Z", "+00:00")) for i in items)
    return (times[-1] - times[0]).total_seconds()


async def test_app_rate_limit_defers_without_dropping(database_url: str, lab: Lab) -> None:
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_RATE_LIMITS_APP_PER_SECOND="200",
        PUSHGATE_ENGINE_BATCH_SIZE="100",
    )
    async with running_gateway(settings) as gw:
        await register_fcm(gw, 600, "c")
        pub = await publish(gw.client, recipients=[{"type": "channel", "channel": "c"}])
        status = await gw.wait_done(pub)
        assert status["counts"]["sent"] == 600
        assert lab.ledger("fcm")["total"] == 600
        # 200 may go at once (the burst), the other 400 at 200/s: at least ~2 s in all.
        assert _spread(lab, "fcm") >= MIN_SPREAD


async def test_invalid_token_rate_throttles_the_pair(
    database_url: str, lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    lab.reset()
    caplog.set_level(logging.WARNING, logger="pushgate.engine")
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_HEALTH_THROTTLE_PER_SECOND="100",
        PUSHGATE_HEALTH_INVALID_MIN_EVENTS="20",
        PUSHGATE_ENGINE_BATCH_SIZE="100",
    )
    async with running_gateway(settings) as gw:
        dead = [fcm_token() for _ in range(40)]
        await gather_limited(
            [register(gw, provider="fcm", token=t, platform="android", channels=["dead"]) for t in dead]
        )
        await register_fcm(gw, 300, "alive")
        lab.fault(provider="fcm", tokens=dead, error="unregistered")
        await gw.wait_done(await publish(gw.client, recipients=[{"type": "channel", "channel": "dead"}]))
        health = {p["provider"]: p for p in (await gw.client.get("/v1/health/providers")).json()["providers"]}
        fcm = health["fcm"]
        assert fcm["recent"]["device_terminal"] == 40 and fcm["invalid_rate"] == 1.0
        assert fcm["throttled"] is True
        assert fcm["distance_to_throttle"] == {"rate_margin": 0.0, "invalid_events_needed": 0}
        assert health["webpush"]["throttled"] is False and health["webpush"]["invalid_rate"] == 0
        lab.reset()
        await asyncio.sleep(REFRESH_SECONDS + 0.1)  # workers re-read the pair's health this often
        status = await gw.wait_done(
            await publish(gw.client, recipients=[{"type": "channel", "channel": "alive"}])
        )
        assert status["counts"]["sent"] == 300
        # Throttled to 100/s: 300 pushes cannot arrive in under ~2 s.
        assert _spread(lab, "fcm") >= MIN_SPREAD
        assert any(
            "invalid tokens" in r.getMessage() and "throttling" in r.getMessage() for r in caplog.records
        )


async def test_a_rate_below_the_chunk_size_still_sends_everything(database_url: str, lab: Lab) -> None:
    """10 pushes/s: chunks shrink to what the bucket holds instead of being deferred for ever."""
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_RATE_LIMITS_FCM_PER_SECOND="10")
    async with running_gateway(settings) as gw:
        await register_fcm(gw, 30, "slow")
        pub = await publish(gw.client, recipients=[{"type": "channel", "channel": "slow"}])
        status = await gw.wait_done(pub, within=30)
        assert status["counts"]["sent"] == 30 and lab.ledger("fcm")["total"] == 30
        assert _spread(lab, "fcm") >= MIN_SPREAD  # 10 at once, then 10/s
