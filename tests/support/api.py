"""Talking to a running gateway the way a backend does: over HTTP, with an app key.

These are the steps nearly every gateway test repeats (register devices, publish, wait until the
publish is final, read its deliveries). Each helper asserts the status code the API promises, so
a test that uses it fails at the step that went wrong rather than later on a missing key.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol, TypeVar

import httpx

from support.wait import wait_for

T = TypeVar("T")

#: A publish in one of these states will not change any more (see ``PublishStatus``).
FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})


class HasClient(Protocol):
    """Anything that carries an authorised client (the ``Gateway`` fixture)."""

    @property
    def client(self) -> httpx.AsyncClient: ...


def _client(gw: HasClient | httpx.AsyncClient) -> httpx.AsyncClient:
    return gw if isinstance(gw, httpx.AsyncClient) else gw.client


def authorised_client(base_url: str, key: str, timeout: float = 30) -> httpx.AsyncClient:
    """A client that sends ``Authorization: Bearer <key>`` (an app's API key) on every request."""
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)


def fcm_token() -> str:
    """A fresh FCM registration token the lab accepts (the lab knows ``fcm_`` tokens)."""
    return "fcm_" + secrets.token_urlsafe(40)


def endpoint(device: dict[str, Any]) -> str:
    """A Web Push device's endpoint: the name the lab's ledger files its pushes under."""
    return str(json.loads(device["token"])["endpoint"])


def ledger_token(device: dict[str, Any]) -> str:
    """The token as the lab's ledger and faults name it (Web Push: the endpoint; APNs: lower case)."""
    if device["provider"] == "webpush":
        return endpoint(device)
    return str(device["token"]).lower() if device["provider"] == "apns" else str(device["token"])


async def register(gw: HasClient | httpx.AsyncClient, **device: Any) -> dict[str, Any]:
    """``POST /v1/devices``; asserts 200 and returns the device."""
    r = await _client(gw).post("/v1/devices", json=device)
    assert r.status_code == 200, r.text
    return dict(r.json()["device"])


async def gather_limited(coros: Iterable[Awaitable[T]], limit: int = 20) -> list[T]:
    """``asyncio.gather`` with at most ``limit`` running at once (the gateway's connection pool is
    finite, and thousands of simultaneous registrations measure the pool, not the gateway)."""
    sem = asyncio.Semaphore(limit)

    async def run(c: Awaitable[T]) -> T:
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))


async def register_fcm(gw: HasClient | httpx.AsyncClient, n: int, channel: str) -> list[dict[str, Any]]:
    """``n`` FCM devices with fresh tokens in ``channel``, registered one request each."""
    return await gather_limited(
        [
            register(gw, provider="fcm", token=fcm_token(), platform="android", channels=[channel])
            for _ in range(n)
        ]
    )


async def register_fcm_batched(gw: HasClient | httpx.AsyncClient, channel: str, n: int) -> list[str]:
    """``n`` FCM devices with fresh tokens in ``channel``, through ``POST /v1/devices/batch``
    (1000 a request, 4 requests at a time); returns their tokens."""
    tokens = [fcm_token() for _ in range(n)]

    async def batch(chunk: list[str]) -> None:
        items = [{"provider": "fcm", "platform": "android", "token": t, "channels": [channel]} for t in chunk]
        r = await _client(gw).post("/v1/devices/batch", json={"devices": items})
        assert r.status_code == 200 and r.json()["created"] == len(items), r.text

    await gather_limited([batch(tokens[k : k + 1000]) for k in range(0, n, 1000)], limit=4)
    return tokens


async def publish(client: httpx.AsyncClient, **body: Any) -> str:
    """``POST /v1/publish`` (a default notification unless given); asserts 202, returns the id."""
    body.setdefault("notification", {"title": "Hello", "body": "World"})
    r = await client.post("/v1/publish", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["publish_id"])


async def publish_status(client: httpx.AsyncClient, publish_id: str) -> dict[str, Any]:
    """``GET /v1/publishes/{id}``; raises on an error status."""
    r = await client.get(f"/v1/publishes/{publish_id}")
    r.raise_for_status()
    return dict(r.json())


async def wait_final(
    client: httpx.AsyncClient,
    publish_id: str,
    within: float = 60.0,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> dict[str, Any]:
    """Poll the publish until its status is final (``FINAL_STATUSES``) and return its body."""
    last: dict[str, Any] = {}

    async def final() -> dict[str, Any] | None:
        nonlocal last
        last = await publish_status(client, publish_id)
        return last if last["status"] in FINAL_STATUSES else None

    return await wait_for(
        final, within, lambda: f"publish {publish_id} to be final: {last}", interval=interval, ignore=ignore
    )


async def paged(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a cursor-paginated list route (1000 a page unless ``limit`` is given)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        q: dict[str, Any] = {"limit": 1000, **params}
        if cursor:
            q["cursor"] = cursor
        r = await client.get(path, params=q)
        r.raise_for_status()
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


async def all_final(client: httpx.AsyncClient, within: float = 120) -> list[dict[str, Any]]:
    """Every publish of the app, once all of them are final (one listing a poll, not one GET
    each; a gateway restarting in between is "not yet")."""

    async def final() -> list[dict[str, Any]] | None:
        pubs = await paged(client, "/v1/publishes")
        return pubs if all(p["status"] in FINAL_STATUSES for p in pubs) else None

    return await wait_for(
        final, within, "every publish to be final", interval=0.3, ignore=(httpx.TransportError,)
    )


async def deliveries(client: httpx.AsyncClient, publish_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every delivery record of a publish (``status=`` and other filters pass through)."""
    return await paged(client, f"/v1/publishes/{publish_id}/deliveries", **params)


async def device(client: httpx.AsyncClient, device_id: str) -> dict[str, Any]:
    """``GET /v1/devices/{id}``; asserts 200 and returns the device."""
    r = await client.get(f"/v1/devices/{device_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["device"])
