"""Liveness and readiness, outside ``/v1`` and without authentication."""

from __future__ import annotations

from typing import Any

from litestar import Response, get, head

from pushgate.api.errors import error_responses
from pushgate.api.services import ServicesDep


@get("/healthz", summary="The process is alive", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@head("/healthz", include_in_schema=False)
async def healthz_head() -> None:
    """``HEAD /healthz``: load balancers and gorush's clients probe with HEAD (a 200, no body)."""


@get(
    "/readyz",
    summary="Database reachable and writable, workers running (200 `degraded` while backpressured)",
    tags=["health"],
    responses=error_responses(503),
)
async def readyz(services: ServicesDep) -> Response[dict[str, Any]]:
    db_ok = await services.db.ping()
    # A database that answers reads may still refuse every write (disk full, read-only): probe.
    fault = await services.db.writable() if db_ok else None
    workers = services.engine.running if services.engine is not None else None
    checks = {"database": "ok" if db_ok else "unreachable"}
    if fault is not None:
        checks["database"] = fault.reason
    if workers is not None:
        checks["workers"] = "running" if workers else "stopped"
    ready = db_ok and fault is None and workers is not False
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    pressure = await services.backpressure.check() if ready and services.backpressure else None
    if pressure is not None:
        # Still able to work (200), but admission is refusing publishes until the queue drains.
        checks["queue"] = "backlogged"
        body = {"status": "degraded", "reason": pressure.reason, "checks": checks}
    if not ready:
        problems = [f"{k} {v}" for k, v in checks.items() if v not in ("ok", "running")]
        if fault is not None:
            problems.append(fault.message)
        body = {"error": {"code": "not_ready", "message": "; ".join(problems), "details": checks}}
    return Response(body, status_code=200 if ready else 503)
