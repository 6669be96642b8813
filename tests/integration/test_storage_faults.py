"""Storage faults (issue 9, item 9): a full disk or a read-only database, made real under a
running gateway (``support.storage``), on SQLite and PostgreSQL.

Reproduced before the fix: a disk filling mid-fan-out produced duplicates (a chunk sent, its
outcomes not committed, the job claimed again and the chunk sent again), 500s on writes, and a
``/readyz`` that said ready.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.api import fcm_token, publish, register, register_fcm_batched, wait_final
from support.database import fresh_database
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.storage import PostgresReadOnly, SqliteFault
from support.wait import wait_for

from pushgate.engine.storage import LOG_INTERVAL

CASES = [("sqlite", "disk_full"), ("sqlite", "read_only"), ("postgresql", "read_only")]


@pytest.fixture(params=CASES, ids=[f"{db}-{kind}" for db, kind in CASES])
def case(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    """A fresh database of the case's kind and the fault to make on it."""
    db, kind = request.param
    with fresh_database(db, tmp_path, lambda: request.getfixturevalue("postgres")) as url:
        yield url, kind


def make_fault(gw: Gateway, url: str, kind: str, request: pytest.FixtureRequest) -> Any:
    if url.startswith("sqlite"):
        return SqliteFault(
            gw.app.state.services.db.engine, "disk_full" if kind == "disk_full" else "read_only"
        )
    return PostgresReadOnly(request.getfixturevalue("postgres"), url)


def ledger_total(lab: Lab) -> int:
    with lab.client() as c:
        r = c.get("/ledger", params={"provider": "fcm", "limit": 1})
        r.raise_for_status()
        return int(r.json()["total"])


def storage_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pushgate.engine" and text in r.getMessage()]


async def test_fanout_through_a_storage_fault_sends_each_device_once(
    case: tuple[str, str], lab: Lab, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Storage fails while a fan-out is being sent, then recovers: sending stops while outcomes
    cannot be committed, every device receives exactly one copy, every delivery is recorded."""
    caplog.set_level(logging.INFO, logger="pushgate.engine")
    url, kind = case
    lab.reset()
    n = 1000
    settings = gateway_settings(
        url,
        lab,
        PUSHGATE_ENGINE_BATCH_SIZE="200",
        # A short lease: before the fix, a batch whose outcomes failed to commit was claimed
        # again (and sent again) as soon as its lease ran out.
        PUSHGATE_ENGINE_LEASE_SECONDS="2",
    )
    async with running_gateway(settings) as gw:
        tokens = await register_fcm_batched(gw, "fan", n)
        fault = make_fault(gw, url, kind, request)
        try:
            lab.fault(provider="fcm", latency_ms=250)  # a few seconds of sending in all
            pub = await publish(gw.client, recipients=[{"type": "channel", "channel": "fan"}])
            await wait_for(lambda: ledger_total(lab) >= 100, 30, "the first chunk at the lab")
            await fault.fail()
            # The storage really refuses writes now (readiness probes it).
            r = await gw.client.get("/readyz")
            assert r.status_code == 503, r.text
            # In-flight chunks land, then sending stops until storage is back.
            await asyncio.sleep(1.5)
            stopped_at = ledger_total(lab)
            await asyncio.sleep(2.5)
            assert ledger_total(lab) == stopped_at < n
            await fault.recover()
            status = await wait_final(gw.client, pub, 60, ignore=(httpx.HTTPStatusError,))
        finally:
            await fault.recover()  # also when the test failed: the gateway must stop cleanly
        assert status["status"] == "completed", status
        assert status["counts"]["sent"] == n, status
        copies = Counter(i["token"] for i in lab.ledger("fcm")["items"])
        assert copies == Counter(tokens), f"duplicates: {[t for t, c in copies.items() if c > 1][:5]}"
        records = await gw.deliveries(pub)
        assert len(records) == n and {d["status"] for d in records} == {"sent"}
    assert storage_lines(caplog, "storage unavailable"), "the fault was never met"


async def test_while_storage_fails_writes_answer_503_and_readyz_says_why(
    case: tuple[str, str], lab: Lab, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes are refused with ``503 storage_unavailable`` and ``Retry-After``, ``/readyz`` is
    not ready and names the fault while ``/healthz`` stays up, the engine logs once per
    interval (not once per poll and worker); after recovery everything is ready again."""
    caplog.set_level(logging.INFO, logger="pushgate.engine")
    url, kind = case
    lab.reset()
    settings = gateway_settings(url, lab)  # polls every 0.1 s with 4 workers
    async with running_gateway(settings) as gw:
        dev = await register(gw, provider="fcm", token=fcm_token(), platform="android", channels=["c"])
        fault = make_fault(gw, url, kind, request)
        try:
            await fault.fail()

            async def refused() -> httpx.Response | None:
                # Big enough to need new pages on a full disk; any write on a read-only one.
                items = [{"provider": "fcm", "platform": "android", "token": fcm_token()} for _ in range(500)]
                r = await gw.client.post("/v1/devices/batch", json={"devices": items})
                if r.status_code == 503 and r.json()["error"].get("details") == {"reason": kind}:
                    return r
                return None

            # PostgreSQL: the first requests may meet a terminated connection (a 503 `unreachable`).
            r = await wait_for(refused, 10, "a write refused with 503")
            body = r.json()["error"]
            assert body["code"] == "storage_unavailable", body
            assert body["details"] == {"reason": kind}, body
            assert r.headers["retry-after"] == "5"
            assert "retry later" in body["message"]
            if kind == "read_only":
                # Every route that writes, not only the big one.
                writes = [
                    gw.client.post("/v1/devices", json={"provider": "fcm", "token": fcm_token(),
                                                        "platform": "android"}),
                    gw.client.post("/v1/publish", json={"recipients": [{"type": "channel", "channel": "c"}],
                                                        "notification": {"title": "t"}}),
                    gw.client.post("/v1/users/u1/channels", json={"op": "add", "channels": ["c"]}),
                    gw.client.delete(f"/v1/devices/{dev['id']}"),
                ]  # fmt: skip
                for w in await asyncio.gather(*writes):
                    assert w.status_code == 503, w.text
                    assert w.json()["error"]["code"] == "storage_unavailable"
                    assert w.headers["retry-after"] == "5"
            ready = await gw.client.get("/readyz")
            assert ready.status_code == 503, ready.text
            err = ready.json()["error"]
            assert err["code"] == "not_ready" and err["details"]["database"] == kind, err
            assert ("read-only" if kind == "read_only" else "disk is full") in err["message"]
            assert (await gw.client.get("/healthz")).status_code == 200
            # Reads still work on a read-only or full database.
            assert (await gw.client.get("/v1/devices")).status_code == 200
            # Long enough for dozens of polls by 4 workers: still one line (interval: 30 s).
            await asyncio.sleep(3)
            assert LOG_INTERVAL > 10
            assert len(storage_lines(caplog, "storage unavailable")) == 1, storage_lines(caplog, "storage")
            await fault.recover()

            async def ready_again() -> bool:
                return (await gw.client.get("/readyz")).status_code == 200

            await wait_for(ready_again, 15, "/readyz ready after recovery")
            await register(gw, provider="fcm", token=fcm_token(), platform="android")
            await wait_for(
                lambda: storage_lines(caplog, "storage writable again"), 15, "the recovery log line"
            )
        finally:
            await fault.recover()  # also when the test failed: the gateway must stop cleanly
