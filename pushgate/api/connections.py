"""Limits on client connections, so slow, silent or numerous clients cannot hold the server.

uvicorn's httptools protocol bounds only the keep-alive idle time (``timeout_keep_alive``). A
connection that never sends its headers, or sends them a byte at a time, was held for ever;
headers had no size cap; and ``limit_concurrency`` answers 503 only once a request's headers
have arrived, after the descriptor is spent, so 20,000 silent connections exhausted the
descriptors and ``/healthz`` was refused. uvicorn has no option for any of that, hence the
small subclass below (it only adds timers and counters around the parser's callbacks):

* a header deadline: a request's line and headers must arrive within ``header_timeout`` of its
  first byte (of the connection, for the first request), else 408 and close;
* a header size cap: request line plus headers over ``max_header_bytes`` → 431 and close;
* a connection cap: past ``max_connections`` the longest-idle connection (no request under way)
  is closed to make room, or, when every connection is busy, the new one gets a 503 and is
  closed, so descriptors stay below the process's limit.

The body is bounded by :func:`body_timeout`, an ASGI middleware: the application reads the body
through ``receive()``, which is where waiting for it can be bounded.
"""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pushgate.api.errors import ApiError
from pushgate.config import ServerSettings

#: With no limit on descriptors, the cap assumes this many.
_UNLIMITED_FDS = 65_536


def default_max_connections(soft_limit: int | None = None) -> int:
    """The connection cap derived from ``RLIMIT_NOFILE`` (soft): a quarter of it, at least 64 and
    at most 4,096 descriptors, is kept for the database, provider connections and files."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit <= 0:
        soft_limit = _UNLIMITED_FDS
    reserve = min(max(soft_limit // 4, 64), 4096)
    return max(16, soft_limit - reserve)


def max_connections(server: ServerSettings) -> int:
    return server.max_connections or default_max_connections()


def _response(status: int, reason: str, code: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}connection: close\r\n\r\n"
    )
    return head.encode() + body


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing; httptools reports it as a parser error."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a header size cap and a connection
    cap. :func:`guarded_protocol` makes a subclass per server holding its limits and its idle
    connections."""

    header_timeout: float = 10.0
    max_header_bytes: int = 16_384
    max_connections: int = 1024
    #: This server's connections with no request under way, oldest first (a dict keeps order).
    idle: dict[GuardedHttpToolsProtocol, None] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._evict_idle():
            transport.write(
                _response(
                    503,
                    "Service Unavailable",
                    "not_ready",
                    "too many connections; retry shortly",
                    "retry-after: 1\r\n",
                )
            )
            transport.close()
            return
        self.idle[self] = None
        self._arm_header_timer()

    def _evict_idle(self) -> bool:
        """Close the longest-idle other connection; False when there is none."""
        for victim in self.idle:
            if victim is not self:
                del self.idle[victim]
                victim._cancel_header_timer()
                victim.transport.close()
                return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.idle.pop(self, None)
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self not in self.idle:  # a request had begun: say why it is cut off
            message = f"the request's headers did not arrive within {self.header_timeout:g} s"
            self.transport.write(_response(408, "Request Timeout", "request_timeout", message))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.idle.pop(self, None)
        self._header_bytes = 0
        self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self.idle[self] = None

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        message = f"request line and headers exceed {self.max_header_bytes} bytes ([server] max_header_bytes)"
        self.transport.write(_response(431, "Request Header Fields Too Large", "headers_too_large", message))
        self.transport.close()


def guarded_protocol(server: ServerSettings) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for one server: its limits, and its own table of idle connections."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": server.header_timeout,
            "max_header_bytes": server.max_header_bytes,
            "max_connections": max_connections(server),
            "idle": {},
        },
    )


def body_timeout(seconds: float) -> Any:
    """ASGI middleware: a request's body must have arrived ``seconds`` after the application
    started on it; a ``receive()`` still waiting then raises a 408 (the connection is closed)."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            done = False

            async def bounded() -> ReceiveMessage:
                nonlocal done
                if done:  # the body is in: waiting for a disconnect is not bounded here
                    return await receive()
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise ApiError(
                        408,
                        "request_timeout",
                        f"the request body did not arrive within {seconds:g} s ([server] body_timeout): "
                        "send the whole body (as long as Content-Length says) without pausing",
                        headers={"Connection": "close"},
                    ) from None
                done = message["type"] != "http.request" or not message.get("more_body", False)
                return message

            await app(scope, bounded, send)

        return middleware

    return wrap
