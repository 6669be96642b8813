"""``pushgate bench realtime``: one channel publish to many open socket.io sessions (issue 13).

The workload a chat or live-score app has: thousands of clients connected, one notification to
a channel they all joined, ``realtime: "only"`` (no push). Each session is a real socket.io client
(python-socketio over WebSocket, the same protocol a browser speaks) with its own connection
token, as a user's app would have; each acks the ``notification`` event, which the gateway records
as the session delivery's ``delivered`` receipt. Per round: time from the publish request to the
first, median, 99th-percentile and last session's event, and the publish's counts once it is
done. The gateway's resident memory is read before the sessions connect, with them open, and
after the rounds (its ``/proc`` when it runs on this machine).

The clients run in this process: on one machine they compete with the gateway for the cores, so
the figures are an upper bound of the gateway's own time (the docs say so next to them).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec
import socketio

from pushgate.bench import procstat
from pushgate.bench.http import BenchClient, BenchHttpError
from pushgate.bench.runner import Endpoints, percentiles, resolve_pid

__all__ = ["run_realtime"]


class _Sessions:
    """The open clients and when each saw which publish's event."""

    def __init__(self) -> None:
        self.clients: list[socketio.AsyncClient] = []
        #: publish id → arrival times (perf_counter) of its event, one per session.
        self.seen: dict[str, list[float]] = {}
        self.changed = asyncio.Event()

    def on_event(self, event: dict[str, Any]) -> bool:
        self.seen.setdefault(str(event.get("publish_id")), []).append(time.perf_counter())
        self.changed.set()
        return True  # the ack: the session delivery's ``delivered`` receipt


def _rss(pid: int | None) -> float | None:
    mb = procstat.rss_mb(pid) if pid else None
    return None if mb is None else round(mb, 1)


async def _token(api: BenchClient, user: str, channel: str) -> str:
    body = {"user": user, "ttl_seconds": 3600, "channels": [channel]}
    status, _h, data = await api.request("POST", "/v1/realtime/tokens", body)
    if status != 201 and status != 200:
        raise BenchHttpError(f"POST /v1/realtime/tokens: HTTP {status}: {data[:300]!r}")
    return str(msgspec.json.decode(data)["token"])


async def _connect(url: str, token: str, sessions: _Sessions) -> None:
    client = socketio.AsyncClient(reconnection=False)
    client.on("notification", sessions.on_event)
    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=30)
    sessions.clients.append(client)


async def _wait_all(sessions: _Sessions, publish_id: str, count: int, wait: float) -> list[float]:
    deadline = time.perf_counter() + wait
    while len(sessions.seen.get(publish_id, ())) < count:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        sessions.changed.clear()
        try:
            await asyncio.wait_for(sessions.changed.wait(), left)
        except TimeoutError:
            break
    return sessions.seen.get(publish_id, [])


async def _publish_status(api: BenchClient, publish_id: str, wait: float) -> dict[str, Any]:
    deadline = time.perf_counter() + wait
    while True:
        status, _h, data = await api.request("GET", f"/v1/publishes/{publish_id}")
        if status != 200:
            raise BenchHttpError(f"GET /v1/publishes/{publish_id}: HTTP {status}: {data[:300]!r}")
        pub: dict[str, Any] = msgspec.json.decode(data)
        delivered = pub["counts"].get("delivered", 0)
        if pub["status"] not in ("accepted", "planning", "dispatching") and (
            delivered >= pub["counts"]["sent"] or time.perf_counter() > deadline
        ):
            return pub
        if time.perf_counter() > deadline:
            return pub
        await asyncio.sleep(0.2)


async def run_realtime(
    ep: Endpoints,
    *,
    sessions: int = 2000,
    rounds: int = 5,
    connect_concurrency: int = 50,
    wait: float = 60.0,
    server_pid: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Open ``sessions`` socket.io clients on one channel, publish ``rounds`` times to it with
    ``realtime: "only"``, and measure how long the sessions took to get each one."""
    server_pid = resolve_pid(server_pid, ep.url)
    channel = f"bench-rt-{uuid.uuid4().hex[:8]}"
    open_ = _Sessions()
    rss_before = _rss(server_pid)
    results: list[dict[str, Any]] = []
    async with BenchClient(ep.url, ep.key) as api:
        gate = asyncio.Semaphore(connect_concurrency)

        async def one(i: int) -> None:
            async with gate:
                await _connect(ep.url, await _token(api, f"bench-rt-{i}", channel), open_)
                if progress is not None:
                    progress(1)

        t_connect = time.perf_counter()
        try:
            await asyncio.gather(*(one(i) for i in range(sessions)))
            connect_seconds = time.perf_counter() - t_connect
            await asyncio.sleep(1.0)  # every session's room joins are done before the first publish
            rss_open = _rss(server_pid)
            for n in range(rounds):
                body = {
                    "recipients": [{"type": "channel", "channel": channel}],
                    "realtime": "only",
                    "notification": {"title": "bench", "body": f"round {n}"},
                }
                t0 = time.perf_counter()
                status, _h, data = await api.request("POST", "/v1/publish", body)
                if status != 202:
                    raise BenchHttpError(f"POST /v1/publish: HTTP {status}: {data[:300]!r}")
                publish_id = str(msgspec.json.decode(data)["publish_id"])
                arrivals = await _wait_all(open_, publish_id, sessions, wait)
                pub = await _publish_status(api, publish_id, wait)
                results.append(
                    {
                        "publish_id": publish_id,
                        "received": len(arrivals),
                        "first_ms": round((min(arrivals) - t0) * 1000, 1) if arrivals else None,
                        "last_ms": round((max(arrivals) - t0) * 1000, 1) if arrivals else None,
                        "latency": percentiles([a - t0 for a in arrivals]),
                        "status": pub["status"],
                        "sent": pub["counts"]["sent"],
                        "delivered": pub["counts"].get("delivered", 0),
                    }
                )
            rss_after = _rss(server_pid)
        finally:
            await asyncio.gather(*(c.disconnect() for c in open_.clients), return_exceptions=True)
    return {
        "mode": "realtime",
        "server_pid": server_pid,
        "sessions": sessions,
        "connected": len(open_.clients),
        "connect_seconds": round(connect_seconds, 2),
        "rss_mb": {"before": rss_before, "sessions_open": rss_open, "after_rounds": rss_after},
        "rounds": results,
    }
