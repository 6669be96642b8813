"""A separate OS process taking frequency-cap slots (``pushgate.store.caps.take``) through
pushgate's own ``Database``, for the multi-process cap tests.

Usage: ``python cap_taker.py '<json spec>'``. The spec gives ``url``, ``app_id``, ``publishes``
(ids), ``concurrency`` (tasks in this process), ``max_windows`` and ``requests`` (CapRequest
fields; ``scopes_reversed`` passes them in reverse order, as another planner might). The process
connects, prints ``ready``, waits for a line on stdin (so several processes start together),
takes one transaction per publish and prints one JSON line: ``{publish_id: {scope: release}}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from pushgate.store.caps import CapRequest, take
from pushgate.store.db import Database


async def main(spec: dict[str, Any]) -> None:
    db = Database(spec["url"])
    requests = [CapRequest(**r) for r in spec["requests"]]
    if spec.get("scopes_reversed"):
        requests.reverse()
    async with db.read() as conn:  # connected before the start signal
        await conn.exec_driver_sql("SELECT 1")
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for publish_id in spec["publishes"]:
        queue.put_nowait(publish_id)
    results: dict[str, dict[str, float | None]] = {}

    async def worker() -> None:
        while not queue.empty():
            publish_id = queue.get_nowait()
            async with db.write() as conn:
                results[publish_id] = await take(
                    conn, db.dialect, spec["app_id"], publish_id, requests, max_windows=spec["max_windows"]
                )

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    await db.dispose()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
