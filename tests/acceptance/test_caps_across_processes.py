"""Issue 11, acceptance 5 (second half): publishes planned by two worker processes at once never
exceed a frequency cap, on PostgreSQL (where several planners really run concurrently) and on
SQLite.

An API-only ``serve --no-workers`` admits every publish with planning at admission turned off,
so each publish's plan job is taken by one of two ``pushgate worker`` processes: their planners
take cap slots for the same user in overlapping transactions.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from support.api import all_final, deliveries
from support.lab import Lab, free_port
from support.process import base_env, kill, process_client, spawn, wait_ready

PUBLISHES = 40
LIMIT = 7


@pytest.mark.timeout(180)
async def test_two_worker_processes_never_exceed_a_cap(tmp_path: Path, lab: Lab, database_url: str) -> None:
    lab.reset()
    port = free_port()
    env = base_env(database_url, PUSHGATE_ENGINE_PLAN_AT_ADMISSION="0")
    config = ["--config", str(lab.toml)]
    api_log = tmp_path / "api.log"
    api = spawn(["serve", "--no-workers", "--port", str(port), *config], env, api_log)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with process_client(port) as client:
            await wait_ready(client, api, api_log)
            for n in range(2):  # the API process migrated the database: the workers start on it
                workers.append(spawn(["worker", *config], env, tmp_path / f"worker{n}.log"))
            r = await client.post(
                "/v1/devices",
                json={"provider": "fcm", "platform": "android", "token": "capped-phone-1", "user": "ann"},
            )
            assert r.status_code == 200, r.text
            cap = {"limit": LIMIT, "window_seconds": 86400 * 365, "per": "user", "action": "drop"}

            async def publish(i: int) -> str:
                body = {
                    "recipients": [{"type": "user", "user": "ann"}],
                    "notification": {"title": f"#{i}"},
                    "frequency_caps": [cap],
                }
                r = await client.post("/v1/publish", json=body)
                assert r.status_code == 202, r.text
                return str(r.json()["publish_id"])

            ids = await asyncio.gather(*(publish(i) for i in range(PUBLISHES)))
            final = {p["id"]: p for p in await all_final(client, within=120) if p["id"] in set(ids)}
            assert len(final) == PUBLISHES
            sent = sum(p["counts"]["sent"] for p in final.values())
            suppressed = sum(p["counts"]["suppressed"] for p in final.values())
            assert (sent, suppressed) == (LIMIT, PUBLISHES - LIMIT)
            assert lab.ledger("fcm", token="capped-phone-1")["total"] == LIMIT
            one_suppressed = next(p for p in final.values() if p["counts"]["suppressed"])
            [d] = await deliveries(client, one_suppressed["id"])
            assert d["reason"] == "frequency_cap"
            # Both workers lived through it (which one planned what is not observable from
            # outside; with 40 plan jobs queued at once, both pollers take some).
            assert all(w.poll() is None for w in workers)
    finally:
        for w in workers:
            kill(w)
        kill(api)
