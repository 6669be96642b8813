"""The handshake's cache of which app a connection token's ``iss`` names (review of issue 13,
finding 8): found apps and misses are both remembered, and concurrent handshakes naming one
uncached issuer share one lookup (a reconnect storm reads the database once, not per session)."""

from __future__ import annotations

import asyncio

import pytest

from pushgate.realtime.tokens import IssuerCache


async def test_hits_misses_and_concurrent_lookups_read_once() -> None:
    asked: list[str] = []
    gate = asyncio.Event()

    async def find(issuer: str) -> tuple[str, str] | None:
        asked.append(issuer)
        await gate.wait()
        return ("app_1", "default") if issuer == "default" else None

    cache = IssuerCache()
    storm = [asyncio.ensure_future(cache.resolve("default", find)) for _ in range(50)]
    strangers = [asyncio.ensure_future(cache.resolve("nobody", find)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*storm)) == {("app_1", "default")}
    assert set(await asyncio.gather(*strangers)) == {None}
    assert await cache.resolve("default", find) == ("app_1", "default")
    assert await cache.resolve("nobody", find) is None
    assert sorted(asked) == ["default", "nobody"]


async def test_a_failed_lookup_is_not_remembered_and_a_cancelled_waiter_does_not_cancel_it() -> None:
    calls = 0
    release = asyncio.Event()

    async def find(issuer: str) -> tuple[str, str] | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database down")
        await release.wait()
        return ("app_1", issuer)

    cache = IssuerCache()
    with pytest.raises(ConnectionError):
        await cache.resolve("default", find)
    leaving = asyncio.ensure_future(cache.resolve("default", find))
    staying = asyncio.ensure_future(cache.resolve("default", find))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await staying == ("app_1", "default")
    assert calls == 2
    assert await cache.resolve("default", find) == ("app_1", "default")
    assert calls == 2
