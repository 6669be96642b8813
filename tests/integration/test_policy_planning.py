"""Policy at planning, end to end (issue 11's acceptance 2-6): delivery windows per time zone,
quiet hours, preferences, frequency caps and native-only payloads, through the real gateway,
queue and provider lab. Hours of windows run in seconds: the tests move the one clock
(``pushgate.domain.clock.CLOCK``) that the planner, the queue and the recorders read.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from support.api import deliveries, fcm_token, publish, publish_status, register, wait_final
from support.gateway import Gateway
from support.lab import Lab
from support.wait import wait_for

from pushgate.domain.clock import CLOCK
from pushgate.domain.timefmt import parse_rfc3339

#: Fixed-offset zones (no DST), by their UTC offset in hours. ``Etc/GMT-5`` is UTC+5 (POSIX sign).
ZONES = {0: "UTC", 1: "Etc/GMT-1", 6: "Etc/GMT-6", 12: "Etc/GMT-12", -6: "Etc/GMT+6"}


async def _fcm(gw: Gateway, channel: str, **extra: Any) -> dict[str, Any]:
    return await register(
        gw, provider="fcm", token=fcm_token(), platform="android", channels=[channel], **extra
    )


async def _by_device(client: httpx.AsyncClient, publish_id: str) -> dict[str, dict[str, Any]]:
    return {d["device_id"]: d for d in await deliveries(client, publish_id)}


def _served(lab: Lab, device: dict[str, Any]) -> int:
    return int(lab.ledger(device["provider"], token=device["token"])["total"])


async def _advance_until_sent(gw: Gateway, publish_id: str, device_id: str, seconds: float) -> None:
    CLOCK.advance(seconds)

    async def sent() -> bool:
        return (await _by_device(gw.client, publish_id))[device_id]["status"] == "sent"

    await wait_for(sent, 10, f"{device_id} to be sent after the clock moved {seconds:.0f} s")


async def test_delivery_window_serves_each_zone_at_its_window_start(gateway: Gateway, lab: Lab) -> None:
    now = datetime.now(UTC)
    # A 4-hour window that opened 30 minutes ago in UTC: open for UTC and UTC+1, closed for the rest.
    start = (now - timedelta(minutes=30)).replace(second=0, microsecond=0)
    end = start + timedelta(hours=4)
    window = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}
    devices = {h: await _fcm(gateway, "zones", timezone=z) for h, z in ZONES.items()}
    no_zone = await _fcm(gateway, "zones")
    pub = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "zones"}],
        notification={"title": "window"},
        deliver_between=window,
    )

    async def planned() -> bool:
        return (await publish_status(gateway.client, pub))["counts"]["planned"] == 6

    await wait_for(planned, 10, "planning")

    async def served_now() -> bool:
        return all(_served(lab, devices[h]) == 1 for h in (0, 1)) and _served(lab, no_zone) == 1

    await wait_for(served_now, 10, "the open zones (and the device without a zone: app default UTC)")
    by_id = await _by_device(gateway.client, pub)
    # Each closed zone is held until its own next window start, not earlier.
    for h in (6, 12, -6):
        d = by_id[devices[h]["id"]]
        assert d["status"] == "held" and d["reason"] == "delivery_window", d
        local_now = now + timedelta(hours=h)
        local_start = local_now.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
        if local_start <= local_now:
            local_start += timedelta(days=1)
        expected = local_start - timedelta(hours=h)
        assert abs(parse_rfc3339(d["release_at"]) - expected.timestamp()) < 1, (h, d["release_at"], expected)
        assert _served(lab, devices[h]) == 0
    status = await publish_status(gateway.client, pub)
    assert status["status"] == "dispatching" and status["counts"]["held"] == 3
    # UTC-6 opens first (5.5 h), then UTC+12 (11.5 h), then UTC+6 (17.5 h); none before its time.
    order = sorted((6, 12, -6), key=lambda h: parse_rfc3339(by_id[devices[h]["id"]]["release_at"]))
    assert order == [-6, 12, 6]
    moved = 0.0
    for h in order:
        release = parse_rfc3339(by_id[devices[h]["id"]]["release_at"])
        step = release - now.timestamp() - moved + 1
        for later in order[order.index(h) + 1 :]:
            assert _served(lab, devices[later]) == 0
        await _advance_until_sent(gateway, pub, devices[h]["id"], step)
        moved += step
    final = await wait_final(gateway.client, pub, 10)
    assert final["status"] == "completed"
    assert final["counts"]["sent"] == 6 and final["counts"]["held"] == 0
    assert all(_served(lab, d) == 1 for d in devices.values())


async def test_no_timezone_skip_and_zone(gateway: Gateway, lab: Lab) -> None:
    now = datetime.now(UTC)
    # Open right now in UTC+6 only.
    local = now + timedelta(hours=6)
    window = {
        "start": (local - timedelta(minutes=10)).strftime("%H:%M"),
        "end": (local + timedelta(minutes=50)).strftime("%H:%M"),
    }
    zoned = await _fcm(gateway, "nz", timezone="Etc/GMT-6")
    bare = await _fcm(gateway, "nz")
    skip = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "nz"}],
        notification={"title": "skip"},
        deliver_between=window,
        no_timezone="skip",
    )
    done = await wait_final(gateway.client, skip, 10)
    assert done["counts"]["sent"] == 1 and done["counts"]["skipped"] == 1
    assert done["skipped_by_reason"] == {"no_timezone": 1}
    assert (await _by_device(gateway.client, skip))[bare["id"]]["reason"] == "no_timezone"
    assumed = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "nz"}],
        notification={"title": "assume"},
        deliver_between=window,
        no_timezone="Etc/GMT-6",
    )
    done = await wait_final(gateway.client, assumed, 10)
    assert done["counts"]["sent"] == 2
    assert _served(lab, zoned) == 2 and _served(lab, bare) == 1


async def test_local_time_and_expiry(gateway: Gateway, lab: Lab) -> None:
    now = datetime.now(UTC)
    at = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    device = await _fcm(gateway, "lt", timezone="UTC")
    pub = await publish(
        gateway.client,
        recipients=[{"type": "device", "device_id": device["id"]}],
        notification={"title": "at nine"},
        local_time=at.strftime("%H:%M"),
    )
    expiring = await publish(
        gateway.client,
        recipients=[{"type": "device", "device_id": device["id"]}],
        notification={"title": "too late"},
        local_time=at.strftime("%H:%M"),
        expire_at=(now + timedelta(hours=1)).isoformat(),
    )
    gone = await wait_final(gateway.client, expiring, 10)
    assert gone["status"] == "expired"
    [d] = await deliveries(gateway.client, pub)
    assert d["status"] == "held" and d["reason"] == "local_time"
    assert abs(parse_rfc3339(d["release_at"]) - at.timestamp()) < 1
    CLOCK.advance(at.timestamp() - now.timestamp() - 60)
    assert (await publish_status(gateway.client, pub))["counts"]["held"] == 1
    await _advance_until_sent(gateway, pub, device["id"], 61)
    assert _served(lab, device) == 1


async def _quiet_devices(gw: Gateway, channel: str) -> tuple[dict[str, Any], dict[str, Any]]:
    alice = await _fcm(gw, channel, user="alice", timezone="UTC")
    bob = await _fcm(gw, channel, user="bob", timezone="UTC")
    return alice, bob


def _quiet_now(action: str, zone: str | None = "UTC") -> dict[str, Any]:
    """Quiet hours that started 10 minutes ago and end in 50 minutes (UTC)."""
    now = datetime.now(UTC)
    return {
        "start": (now - timedelta(minutes=10)).strftime("%H:%M"),
        "end": (now + timedelta(minutes=50)).strftime("%H:%M"),
        "timezone": zone,
        "action": action,
    }


async def test_app_quiet_hours_defer_drop_and_critical(gateway: Gateway, lab: Lab) -> None:
    alice, _bob = await _quiet_devices(gateway, "q")
    r = await gateway.client.put("/v1/policy", json={"quiet_hours": _quiet_now("drop")})
    assert r.status_code == 200, r.text
    dropped = await publish(
        gateway.client, recipients=[{"type": "channel", "channel": "q"}], notification={"title": "x"}
    )
    done = await wait_final(gateway.client, dropped, 10)
    assert done["counts"]["suppressed"] == 2 and done["suppressed_by_reason"] == {"quiet_hours": 2}
    assert done["status"] == "completed" and _served(lab, alice) == 0
    critical = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "q"}],
        notification={"title": "otp"},
        priority="critical",
    )
    assert (await wait_final(gateway.client, critical, 10))["counts"]["sent"] == 2
    r = await gateway.client.put("/v1/policy", json={"quiet_hours": _quiet_now("defer")})
    assert r.status_code == 200, r.text
    deferred = await publish(
        gateway.client, recipients=[{"type": "channel", "channel": "q"}], notification={"title": "y"}
    )

    async def held() -> bool:
        return (await publish_status(gateway.client, deferred))["counts"]["held"] == 2

    await wait_for(held, 10, "both held by quiet hours")
    d = (await _by_device(gateway.client, deferred))[alice["id"]]
    assert d["reason"] == "quiet_hours"
    assert 45 * 60 < parse_rfc3339(d["release_at"]) - datetime.now(UTC).timestamp() <= 50 * 60
    assert _served(lab, alice) == 1  # the critical one only
    await _advance_until_sent(gateway, deferred, alice["id"], 51 * 60)
    assert (await wait_final(gateway.client, deferred, 10))["counts"]["sent"] == 2


async def test_user_quiet_hours(gateway: Gateway, lab: Lab) -> None:
    alice, bob = await _quiet_devices(gateway, "uq")
    r = await gateway.client.put("/v1/users/alice/quiet_hours", json=_quiet_now("drop"))
    assert r.status_code == 200, r.text
    pub = await publish(
        gateway.client, recipients=[{"type": "channel", "channel": "uq"}], notification={"title": "x"}
    )
    done = await wait_final(gateway.client, pub, 10)
    by_id = await _by_device(gateway.client, pub)
    assert by_id[alice["id"]]["status"] == "suppressed" and by_id[alice["id"]]["reason"] == "quiet_hours"
    assert by_id[bob["id"]]["status"] == "sent"
    assert done["counts"]["suppressed"] == 1 and _served(lab, alice) == 0


async def test_preferences_suppress_opted_out_users(gateway: Gateway, lab: Lab) -> None:
    for cat in ("marketing", "transactional"):
        r = await gateway.client.post(
            "/v1/categories", json={"id": cat, "description": cat, "default_opt_in": True}
        )
        assert r.status_code == 201, r.text
    alice = await _fcm(gateway, "news", user="alice")
    alice2 = await _fcm(gateway, "news", user="alice")
    bob = await _fcm(gateway, "news", user="bob")
    anon = await _fcm(gateway, "news")
    r = await gateway.client.put("/v1/users/alice/preferences/marketing", json={"opted_in": False})
    assert r.status_code == 200, r.text
    marketing = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "news"}],
        notification={"title": "sale"},
        category="marketing",
    )
    done = await wait_final(gateway.client, marketing, 10)
    assert done["counts"]["sent"] == 2 and done["suppressed_by_reason"] == {"preference": 2}
    by_id = await _by_device(gateway.client, marketing)
    assert {by_id[d["id"]]["status"] for d in (alice, alice2)} == {"suppressed"}
    assert by_id[bob["id"]]["status"] == by_id[anon["id"]]["status"] == "sent"
    filtered = await deliveries(gateway.client, marketing, status="suppressed", reason="preference")
    assert {d["device_id"] for d in filtered} == {alice["id"], alice2["id"]}
    receipt = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "news"}],
        notification={"title": "your order"},
        category="transactional",
    )
    assert (await wait_final(gateway.client, receipt, 10))["counts"]["sent"] == 4
    assert _served(lab, alice) == 1 and _served(lab, bob) == 2
    r = await gateway.client.post(
        "/v1/publish",
        json={
            "recipients": [{"type": "channel", "channel": "news"}],
            "notification": {"title": "x"},
            "category": "nope",
        },
    )
    assert r.status_code == 400 and "nope" in r.json()["error"]["message"]


async def test_frequency_cap_drop_and_delay(gateway: Gateway, lab: Lab) -> None:
    # Start just inside a fresh hour: the fixed 3600 s window does not roll over mid-test.
    CLOCK.advance(3600 - CLOCK.now() % 3600 + 1)
    user = "capped-" + secrets.token_hex(4)
    phone = await _fcm(gateway, "c", user=user)
    cap = {"limit": 2, "window_seconds": 3600, "per": "user", "action": "drop"}
    sent = [
        await publish(
            gateway.client,
            recipients=[{"type": "user", "user": user}],
            notification={"title": f"n{i}"},
            frequency_caps=[cap],
        )
        for i in range(3)
    ]
    outcomes = [(await wait_final(gateway.client, p, 10))["counts"] for p in sent]
    # Capped publishes are planned by the workers, in whichever order they take them: two of the
    # three go, the one planned last is capped.
    assert sorted(c["sent"] for c in outcomes) == [0, 1, 1]
    [capped] = [p for p, c in zip(sent, outcomes, strict=True) if c["sent"] == 0]
    [third] = await deliveries(gateway.client, capped)
    assert third["status"] == "suppressed" and third["reason"] == "frequency_cap"
    # Critical bypasses caps.
    otp = await publish(
        gateway.client,
        recipients=[{"type": "user", "user": user}],
        notification={"title": "otp"},
        priority="critical",
        frequency_caps=[cap],
    )
    assert (await wait_final(gateway.client, otp, 10))["counts"]["sent"] == 1
    # With delay, the next one waits for the next window (fixed windows on the epoch).
    delayed_cap = {**cap, "action": "delay"}
    later = await publish(
        gateway.client,
        recipients=[{"type": "user", "user": user}],
        notification={"title": "later"},
        frequency_caps=[delayed_cap],
    )

    async def held() -> bool:
        return (await publish_status(gateway.client, later))["counts"]["held"] == 1

    await wait_for(held, 10, "held by the cap")
    [d] = await deliveries(gateway.client, later)
    window_end = (CLOCK.now() // 3600 + 1) * 3600
    assert d["reason"] == "frequency_cap" and parse_rfc3339(d["release_at"]) == window_end
    await _advance_until_sent(gateway, later, phone["id"], window_end - CLOCK.now() + 1)
    assert _served(lab, phone) == 4


async def test_native_only_payload_skips_other_providers(gateway: Gateway, lab: Lab) -> None:
    fcm = await _fcm(gateway, "mixed")
    apns = await register(
        gateway, provider="apns", token=secrets.token_hex(32), platform="ios", channels=["mixed"]
    )
    pub = await publish(
        gateway.client,
        recipients=[{"type": "channel", "channel": "mixed"}],
        notification={},
        providers={"fcm": {"message": {"data": {"k": "v"}}}},
    )
    done = await wait_final(gateway.client, pub, 10)
    assert done["status"] == "completed"
    assert done["counts"]["sent"] == 1 and done["counts"]["skipped"] == 1
    assert done["skipped_by_reason"] == {"no_payload_for_provider": 1}
    by_id = await _by_device(gateway.client, pub)
    assert by_id[apns["id"]]["status"] == "skipped" and by_id[fcm["id"]]["status"] == "sent"
    assert _served(lab, fcm) == 1 and _served(lab, apns) == 0
