"""``pushgate bench fairness``: one app's single-device latency while another app's backlog drains.

Two tenants of one gateway: the *backlog app* (``--backlog-key``) seeds a channel of FCM
devices and publishes to it until ``--backlog`` deliveries are queued (planned, not yet sent);
then the *measured app* (``--key``) publishes to one MiPush device, one publish at a time, and
each sample is the time from ``POST /v1/publish`` to the lab's MiPush counter moving. The two
apps use different providers so that the lab's cheap per-provider counters (``--lean`` keeps
nothing else) tell the measured app's deliveries from the backlog's.

With claims shared fairly between apps the measured app waits for one batch of the backlog at
most, not for the backlog (issue 9: 11.9 s behind 200,000 deliveries before); the target is a
p99 under 1 s.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from pathlib import Path
from typing import Any

from pushgate.bench.http import BenchClient, BenchHttpError
from pushgate.bench.runner import Endpoints, percentiles, run_seed

#: The lab's name for the FCM service account it writes (``pushgate lab --write-credentials``).
SERVICE_ACCOUNT = "fcm-service-account.json"
FINAL = ("sent", "failed", "invalid_token", "expired", "cancelled", "suppressed", "skipped")


async def _ensure_fcm(backlog: BenchClient, lab_credentials: Path | None) -> None:
    """The backlog app needs FCM credentials: upload the lab's service account if it has none."""
    items = (await backlog.json("GET", "/v1/credentials", expect=200))["items"]
    if any(i["provider"] == "fcm" for i in items):
        return
    if lab_credentials is None:
        raise ValueError(
            "the --backlog-key app has no FCM credentials: give --lab-credentials DIR (the "
            "directory of `pushgate lab --write-credentials`; the gateway needs PUSHGATE_SECRET_KEY) "
            "or configure [apps.<name>.fcm]"
        )
    account = json.loads((lab_credentials / SERVICE_ACCOUNT).read_text())
    status, _, body = await backlog.request("PUT", "/v1/credentials/fcm", {"service_account": account})
    if status != 200:
        raise BenchHttpError(f"PUT /v1/credentials/fcm for the backlog app: HTTP {status}: {body[:300]!r}")


async def _outstanding(backlog: BenchClient, publish_ids: list[str]) -> tuple[int, int]:
    """``(planned, planned without a final outcome)`` over the backlog's publishes."""
    planned = unsent = 0
    for pid in publish_ids:
        counts = (await backlog.json("GET", f"/v1/publishes/{pid}", expect=200))["counts"]
        planned += counts["planned"]
        unsent += counts["planned"] - sum(counts[k] for k in FINAL)
    return planned, unsent


async def _queue_backlog(
    backlog: BenchClient, channel: str, publishes: int, expected: int, give_up_after: float
) -> list[str]:
    """Publish ``publishes`` times to ``channel`` and wait until all of it is planned."""
    body = {"recipients": [{"type": "channel", "channel": channel}], "notification": {"title": "backlog"}}
    ids = [
        str((await backlog.json("POST", "/v1/publish", body, expect=202))["publish_id"])
        for _ in range(publishes)
    ]
    deadline = time.monotonic() + give_up_after
    while (await _outstanding(backlog, ids))[0] < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the backlog was not planned within {give_up_after:.0f} s")
        await asyncio.sleep(0.2)
    return ids


async def _samples(
    measured: BenchClient, lab: BenchClient, device_id: str, count: int, poll: float
) -> tuple[list[float], int]:
    """``count`` single-device publishes, one at a time: publish → the lab's MiPush counter moves."""
    samples: list[float] = []
    timeouts = 0
    before = int((await lab.json("GET", "/ledger/stats"))["mipush"])
    for i in range(count):
        body = {
            "recipients": [{"type": "device", "device_id": device_id}],
            "notification": {"title": f"m{i}"},
        }
        t0 = time.perf_counter()
        await measured.json("POST", "/v1/publish", body, expect=202)
        while True:
            now = int((await lab.json("GET", "/ledger/stats"))["mipush"])
            if now > before:
                samples.append(time.perf_counter() - t0)
                before = now
                break
            if time.perf_counter() - t0 > 10:
                timeouts += 1
                break
            await asyncio.sleep(poll)
    return samples, timeouts


async def run_fairness(
    ep: Endpoints,
    *,
    backlog_key: str,
    backlog: int = 200_000,
    backlog_devices: int = 20_000,
    backlog_channel: str = "fairness-backlog",
    seed: bool = True,
    count: int = 100,
    lab_credentials: Path | None = None,
    poll: float = 0.002,
    give_up_after: float = 600.0,
    keep_backlog: bool = False,
) -> dict[str, Any]:
    """Queue ``backlog`` deliveries for the backlog app, then time ``count`` single-device
    publishes of the measured app (``ep.key``) while the backlog drains."""
    publishes = max(1, math.ceil(backlog / backlog_devices))
    async with (
        BenchClient(ep.url, ep.key) as measured,
        BenchClient(ep.url, backlog_key) as other,
        BenchClient(ep.lab_url) as lab,
    ):
        await _ensure_fcm(other, lab_credentials)
        if seed:
            seeded = await run_seed(
                Endpoints(ep.url, backlog_key, ep.lab_url),
                devices=backlog_devices,
                channels=0,
                providers=["fcm"],
                channel=backlog_channel,
            )
            if seeded["errors"]:
                raise BenchHttpError(f"seeding the backlog app failed: {seeded['errors']}")
        token = f"bench-fairness-{secrets.token_hex(8)}"
        device = {"provider": "mipush", "platform": "android", "token": token}
        device_id = str((await measured.json("POST", "/v1/devices", device))["device"]["id"])
        await lab.json("DELETE", "/ledger")
        started = time.perf_counter()
        ids = await _queue_backlog(
            other, backlog_channel, publishes, publishes * backlog_devices, give_up_after
        )
        queued_in = time.perf_counter() - started
        planned, at_start = await _outstanding(other, ids)
        t0 = time.perf_counter()
        samples, timeouts = await _samples(measured, lab, device_id, count, poll)
        measured_for = time.perf_counter() - t0
        _, at_end = await _outstanding(other, ids)
        if not keep_backlog:
            for pid in ids:
                await other.request("POST", f"/v1/publishes/{pid}/cancel")
    lat = percentiles(samples)
    return {
        "mode": "fairness",
        "backlog_publishes": publishes,
        "backlog_planned": planned,
        "backlog_queued_seconds": round(queued_in, 3),
        "backlog_outstanding_at_start": at_start,
        "backlog_outstanding_at_end": at_end,
        "backlog_cancelled": not keep_backlog,
        "count": count,
        "received": len(samples),
        "timeouts": timeouts,
        "seconds": round(measured_for, 3),
        "latency": lat,
        "p99_under_1s": bool(samples) and not timeouts and lat["p99_ms"] < 1000,
    }
