"""Where policy rules meet (found in review): caps with delivery windows, a user's devices in
several zones under one cap, and TTLs with windows and schedules. Through the real gateway, with
the test clock moved to a chosen time of day."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from support.api import deliveries, fcm_token, publish, publish_status, register, wait_final
from support.gateway import Gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.domain.clock import CLOCK
from pushgate.domain.timefmt import parse_rfc3339

WINDOW = {"start": "12:00", "end": "14:00"}


def _at_utc_hour(hour: int) -> None:
    """Move the clock to ``hour``:00 UTC of the next day (a fresh UTC-day cap window)."""
    now = CLOCK.now()
    CLOCK.advance(86400 - now % 86400 + hour * 3600)


async def _user_device(gw: Gateway, user: str, zone: str) -> dict[str, Any]:
    return await register(gw, provider="fcm", token=fcm_token(), platform="android", user=user, timezone=zone)


async def _planned(gw: Gateway, publish_id: str, n: int) -> None:
    async def done() -> bool:
        return (await publish_status(gw.client, publish_id))["counts"]["planned"] == n

    await wait_for(done, 10, f"{n} planned")


async def test_a_delayed_cap_respects_the_delivery_window(gateway: Gateway, lab: Lab) -> None:
    _at_utc_hour(13)
    user = "u-" + secrets.token_hex(4)
    await _user_device(gateway, user, "UTC")
    cap = {"limit": 1, "window_seconds": 86400, "per": "user", "action": "delay"}
    body = {
        "recipients": [{"type": "user", "user": user}],
        "frequency_caps": [cap],
        "deliver_between": WINDOW,
    }
    first = await publish(gateway.client, notification={"title": "a"}, **body)
    assert (await wait_final(gateway.client, first, 10))["counts"]["sent"] == 1
    second = await publish(gateway.client, notification={"title": "b"}, **body)
    await _planned(gateway, second, 1)
    [d] = await deliveries(gateway.client, second)
    assert d["status"] == "held"
    release = datetime.fromtimestamp(parse_rfc3339(d["release_at"]), UTC)
    # The cap's next window opens at 00:00 UTC; the device's own window then holds it to 12:00.
    assert (release.hour, release.minute) == (12, 0) and d["reason"] == "delivery_window", d


async def test_a_user_cap_counts_where_the_users_first_device_goes(gateway: Gateway, lab: Lab) -> None:
    _at_utc_hour(13)
    user = "u-" + secrets.token_hex(4)
    far = await _user_device(gateway, user, "Etc/GMT-12")  # UTC+12: its window opens tomorrow
    near = await _user_device(gateway, user, "UTC")  # inside its window now
    cap = {"limit": 1, "window_seconds": 86400, "per": "user", "action": "drop"}
    user_recipient = [{"type": "user", "user": user}]
    p1 = await publish(
        gateway.client,
        recipients=user_recipient,
        notification={"title": "1"},
        frequency_caps=[cap],
        deliver_between=WINDOW,
    )
    await _planned(gateway, p1, 2)
    by_id = {d["device_id"]: d for d in await deliveries(gateway.client, p1)}
    # A drop cap never delays: each device keeps its own window.
    assert by_id[near["id"]]["status"] in ("pending", "sent")
    assert by_id[far["id"]]["status"] == "held" and by_id[far["id"]]["reason"] == "delivery_window"
    p2 = await publish(
        gateway.client, recipients=user_recipient, notification={"title": "2"}, frequency_caps=[cap]
    )
    counts = (await wait_final(gateway.client, p2, 10))["counts"]
    # The user's one slot for today went to p1: p2 is capped on both devices.
    assert counts["sent"] == 0 and counts["suppressed"] == 2, counts


async def test_a_window_opening_after_the_ttl_is_expired_at_planning(gateway: Gateway, lab: Lab) -> None:
    now = datetime.now(UTC)
    window = {
        "start": (now + timedelta(hours=2)).strftime("%H:%M"),
        "end": (now + timedelta(hours=3)).strftime("%H:%M"),
    }
    await register(
        gateway, provider="fcm", token=fcm_token(), platform="android", channels=["ttl"], timezone="UTC"
    )
    pub = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "ttl"}],
        notification={"title": "x", "ttl_seconds": 60},
        deliver_between=window,
    )
    done = await wait_final(gateway.client, pub, 10)
    [d] = await deliveries(gateway.client, pub)
    assert done["status"] == "expired" and d["status"] == "expired", (done, d)


async def test_a_scheduled_publishs_ttl_counts_from_its_send_time(gateway: Gateway, lab: Lab) -> None:
    device = await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["s"])
    send_at = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pub = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "s"}],
        notification={"title": "x", "ttl_seconds": 3600},
        send_at=send_at,
    )
    CLOCK.advance(2 * 3600 + 5)
    done = await wait_final(gateway.client, pub, 15)
    assert done["status"] == "completed" and done["counts"]["sent"] == 1, done
    assert lab.ledger("fcm", token=device["token"])["total"] == 1
