"""The load generator's HTTP client: one pooled pyreqwest client, JSON in and out via msgspec.

Kept deliberately thin: the generator must cost far less CPU than the server it measures.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError

__all__ = ["BenchClient", "BenchHttpError"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


class BenchHttpError(Exception):
    """No HTTP answer at all (refused, reset, timeout)."""


class BenchClient:
    """One base URL, optional bearer key; ``request`` answers ``(status, headers, body)``."""

    def __init__(self, base_url: str, key: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"content-type": "application/json"}
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self._client: Client = (
            ClientBuilder()
            .http2(False)
            .timeout(timedelta(seconds=timeout))
            .connect_timeout(timedelta(seconds=5))
            .pool_max_idle_per_host(1024)
            .follow_redirects(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .build()
        )

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        builder = self._client.request(method, self.base_url + path).headers(self._headers)
        if body is not None:
            builder = builder.body_bytes(body if isinstance(body, bytes) else _encode(body))
        try:
            resp = await builder.build().send()
            data = await resp.bytes()
        except PyreqwestError as exc:
            raise BenchHttpError(f"{method} {path}: {exc.message}") from exc
        return resp.status, dict(resp.headers.items()), data.to_bytes()

    async def json(self, method: str, path: str, body: Any = None, *, expect: int | None = None) -> Any:
        """Request and decode; any status >= 400 (or other than ``expect``) raises."""
        status, _headers, data = await self.request(method, path, body)
        if status >= 400 or (expect is not None and status != expect):
            raise BenchHttpError(f"{method} {self.base_url}{path}: HTTP {status}: {data[:300]!r}")
        return _decode(data) if data else None

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> BenchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
