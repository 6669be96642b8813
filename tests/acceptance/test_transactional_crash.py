"""Issue 10, acceptance 3: ``kill -9`` during a stream of 5,000 single-user publishes.

The publishes are planned at admission and sent in groups (``engine.dispatch_group``), so a
kill lands on groups in flight: their jobs are claimed, some requests answered, nothing
recorded. After the restart every admitted publish must complete and every device be notified;
the duplicates (counted by the lab's ledger, printed) are bounded by what was in flight.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from support.api import all_final
from support.lab import Lab, free_port
from support.process import base_env, kill, ledger_counts, process_client, spawn, wait_ready

PUBLISHES = 5_000
#: Request loops firing publishes.
LOOPS = 32
#: Worker tasks (plus the one kept for idle apps) times the jobs each claims at once: the most
#: jobs, hence notifications, that can be in flight when the process dies.
CONCURRENCY, GROUP = 4, 64
IN_FLIGHT_BOUND = (CONCURRENCY + 1) * GROUP


@pytest.mark.timeout(300)
async def test_kill_9_during_a_stream_of_single_user_publishes(
    tmp_path: Path, lab: Lab, database_url: str
) -> None:
    lab.reset()
    port = free_port()
    env = base_env(
        database_url,
        PUSHGATE_ENGINE_LEASE_SECONDS="2",
        PUSHGATE_ENGINE_CONCURRENCY=str(CONCURRENCY),
        PUSHGATE_ENGINE_DISPATCH_GROUP=str(GROUP),
    )
    args = ["serve", "--port", str(port), "--config", str(lab.toml)]
    log = tmp_path / "serve.log"
    proc = spawn(args, env, log)
    try:
        async with process_client(port) as client:
            await wait_ready(client, proc, log)
            tokens = [f"stream-{i:05d}-{time.time_ns()}" for i in range(PUBLISHES)]
            for k in range(0, PUBLISHES, 1000):
                items = [
                    {"provider": "fcm", "platform": "android", "token": t, "user": f"s{i}"}
                    for i, t in enumerate(tokens[k : k + 1000], k)
                ]
                r = await client.post("/v1/devices/batch", json={"devices": items})
                assert r.status_code == 200, r.text
            lab.reset()
            # Slow enough answers that groups are in flight when the process dies.
            lab.fault(provider="fcm", latency_ms=50)

            admitted: dict[int, str] = {}
            todo = list(range(PUBLISHES))
            third = asyncio.Event()

            async def loop() -> None:
                while todo:
                    i = todo.pop()
                    body = {
                        "recipients": [{"type": "user", "user": f"s{i}"}],
                        "notification": {"title": f"#{i}"},
                    }
                    try:
                        r = await client.post("/v1/publish", json=body)
                    except httpx.TransportError:
                        todo.append(i)  # the process died under it: not admitted (or unknown)
                        return
                    assert r.status_code == 202, r.text
                    admitted[i] = str(r.json()["publish_id"])
                    if len(admitted) >= PUBLISHES // 3:
                        third.set()

            grouped_before_kill: list[float] = []

            async def killer() -> None:
                await third.wait()
                metrics = (await client.get("/metrics")).text
                for kind in ("sum", "count"):
                    found = re.search(
                        rf'^pushgate_dispatch_group_jobs_{kind}\{{provider="fcm"\}} (\S+)', metrics, re.M
                    )
                    grouped_before_kill.append(float(found.group(1)) if found else 0.0)
                proc.send_signal(signal.SIGKILL)

            await asyncio.gather(killer(), *(loop() for _ in range(LOOPS)))
            proc.wait(timeout=10)
            before_kill = len(admitted)
            # The stream was being sent in groups (more jobs than groups) when the process died.
            jobs_sent, groups_sent = grouped_before_kill
            assert jobs_sent > groups_sent > 0, grouped_before_kill
            proc = spawn(args, env, log)
            await wait_ready(client, proc, log)
            # The rest of the stream goes to the restarted process (a publish whose answer was
            # lost in the kill may have been admitted too: it is sent again under a new id).
            await asyncio.gather(*(loop() for _ in range(LOOPS)))
            assert len(admitted) == PUBLISHES
            listed = {p["id"]: p for p in await all_final(client, within=120)}
            finals = [listed[pid] for pid in admitted.values()]
        bad = [f for f in finals if f["status"] != "completed" or f["counts"]["sent"] != 1]
        assert not bad, bad[:3]
        counts = ledger_counts(lab)
        missing = [t for t in tokens if counts[t] == 0]
        assert not missing, f"{len(missing)} device(s) never notified"
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        print(
            f"\n{before_kill} publishes admitted before the kill, {PUBLISHES} in all; the lab counted "
            f"{sum(counts.values())} notifications for {PUBLISHES} devices: {duplicates} duplicate(s), "
            f"bound {IN_FLIGHT_BOUND} (+ publishes whose answer the kill lost)"
        )
        assert duplicates <= IN_FLIGHT_BOUND + LOOPS, duplicates
    finally:
        kill(proc)
        lab.reset()
