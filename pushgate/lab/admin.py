"""The lab's own control surface: health, credentials, ledger and faults.

These routes are not part of any provider protocol; tests and benchmarks use them to read
what arrived and to script failures, over HTTP like everything else.
"""

from __future__ import annotations

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler

from pushgate.lab.faults import FaultSpec
from pushgate.lab.ledger import PROVIDERS
from pushgate.lab.responses import json_response
from pushgate.lab.state import LabState


def admin_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """Route handlers bound to this lab's state."""

    @get("/healthz")
    async def healthz() -> Response[bytes]:
        return json_response({"status": "ok"})

    @get("/credentials")
    async def credentials() -> Response[bytes]:
        """Lets a client configure itself against a lab that wrote no files."""
        return json_response(lab.credentials.public_document())

    @get("/ledger")
    async def ledger(
        provider: str | None = None, token: str | None = None, limit: int | None = None
    ) -> Response[bytes]:
        if provider is not None and provider not in PROVIDERS:
            return json_response({"error": f"provider must be one of {', '.join(PROVIDERS)}"}, 400)
        if limit is not None and limit < 0:
            return json_response({"error": "limit must be >= 0"}, 400)
        return json_response(lab.ledger.query(provider, token, limit))

    @delete("/ledger", status_code=204)
    async def clear_ledger() -> None:
        lab.ledger.clear()

    @get("/ledger/stats")
    async def ledger_stats() -> Response[bytes]:
        return json_response(lab.ledger.stats())

    @post("/faults")
    async def add_fault(request: Request) -> Response[bytes]:
        try:
            spec = msgspec.json.decode(await request.body(), type=FaultSpec)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return json_response({"error": str(exc)}, 400)
        if spec.error is None and spec.latency_ms is None and spec.hostile is None:
            return json_response({"error": "a fault needs an error, a hostile answer, a latency_ms"}, 400)
        if spec.hostile is not None and (spec.error is not None or spec.provider not in ("webpush", "wns")):
            return json_response({"error": "hostile: only for webpush and wns, and not with error"}, 400)
        return json_response({"id": lab.faults.add(spec).id}, 201)

    @get("/faults")
    async def list_faults() -> Response[bytes]:
        return json_response({"items": lab.faults.list()})

    @delete("/faults", status_code=204)
    async def clear_faults() -> None:
        lab.faults.clear()

    return [healthz, credentials, ledger, clear_ledger, ledger_stats, add_fault, list_faults, clear_faults]
