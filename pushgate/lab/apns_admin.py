"""The APNs simulator's control routes on the lab's cleartext port: stats and per-token state.

Kept apart from :mod:`pushgate.lab.apns`, which is the protocol Apple speaks; these routes are
the lab's own, used by tests and benchmarks to read counters and script token states.
"""

from __future__ import annotations

import time

import msgspec
from litestar import Request, Response, delete, get, put
from litestar.handlers import HTTPRouteHandler

from pushgate.lab.apns import DeviceState, simulator
from pushgate.lab.responses import json_response
from pushgate.lab.state import LabState

__all__ = ["apns_handlers"]


def apns_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """Control routes on the lab's HTTP port: stats and per-token state."""
    sim = simulator(lab)

    @get("/apns/stats")
    async def stats() -> Response[bytes]:
        return json_response(sim.stats_document())

    @delete("/apns/stats", status_code=204)
    async def reset_stats() -> None:
        sim.reset_stats()

    @put("/apns/settings")
    async def settings(request: Request) -> Response[bytes]:
        """``{"max_concurrent_streams": N}``: the limit new connections get once authenticated."""
        try:
            body = msgspec.json.decode(await request.body())
            value = int(body["max_concurrent_streams"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            return json_response({"error": 'body must be {"max_concurrent_streams": <int>=1>}'}, 400)
        if value < 1:
            return json_response({"error": "max_concurrent_streams must be >= 1"}, 400)
        sim.open_max_streams = value
        return json_response({"max_concurrent_streams": value})

    @put("/apns/devices/{token:str}")
    async def set_device(token: str, request: Request) -> Response[bytes]:
        try:
            spec = msgspec.json.decode(await request.body(), type=DeviceState)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return json_response({"error": str(exc)}, 400)
        if spec.state not in ("registered", "unregistered", "other_topic"):
            return json_response({"error": "state must be registered, unregistered or other_topic"}, 400)
        if spec.state == "unregistered" and spec.timestamp is None:
            spec.timestamp = int(time.time() * 1000)
        if spec.state == "other_topic" and not spec.topic:
            spec.topic = "com.example.other"
        sim.devices[token.lower()] = spec
        return json_response(msgspec.to_builtins(spec))

    @delete("/apns/devices", status_code=204)
    async def clear_devices() -> None:
        sim.devices.clear()

    return [stats, reset_stats, settings, set_device, clear_devices]


# --------------------------------------------------------------------------- listeners
