"""Setting up many devices quickly, through the API: the preparation of large fan-out tests.

Registering a thousand devices one request each, or asking the lab for Web Push subscriptions
one connection each, took most of the run of the tests that need them, and measured the single
routes rather than the fan-out those tests are about. These helpers do the same through
``POST /v1/devices/batch`` (validated exactly like ``POST /v1/devices``) and one lab connection.
"""

from __future__ import annotations

from typing import Any

import httpx

from support.api import HasClient, gather_limited, paged
from support.lab import Lab

#: The most devices one ``POST /v1/devices/batch`` takes.
BATCH = 1000


def subscriptions(lab: Lab, n: int, listener: str = "h2") -> list[dict[str, Any]]:
    """``n`` fresh Web Push subscriptions (``Lab.subscription``), over one lab connection."""
    with lab.client() as c:
        out = []
        for _ in range(n):
            r = c.post("/webpush/subscriptions", json={"listener": listener})
            r.raise_for_status()
            out.append(dict(r.json()))
        return out


async def register_many(
    gw: HasClient | httpx.AsyncClient, items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Register ``items`` (each a ``POST /v1/devices`` body, all new tokens) through the batch
    route, 1000 a request, and return the devices as ``GET /v1/devices`` shows them, in the
    order of ``items``."""
    client = gw if isinstance(gw, httpx.AsyncClient) else gw.client

    async def batch(chunk: list[dict[str, Any]]) -> list[str]:
        r = await client.post("/v1/devices/batch", json={"devices": chunk})
        assert r.status_code == 200 and r.json()["created"] == len(chunk), r.text
        return [str(d["id"]) for d in r.json()["devices"]]

    chunks = [items[k : k + BATCH] for k in range(0, len(items), BATCH)]
    ids = [i for chunk_ids in await gather_limited([batch(c) for c in chunks], limit=4) for i in chunk_ids]
    listed = {d["id"]: d for d in await paged(client, "/v1/devices")}
    return [listed[i] for i in ids]
