"""The simulated services' TLS listeners, in the lab's event loop.

The real FCM, OAuth, Web Push, HMS, WNS and MiPush endpoints are HTTPS, and FCM and the push
services negotiate HTTP/2 by ALPN. Serving the lab's stand-ins the same way is what makes
pushgate's production transport (TLS, a trusted CA, HTTP/2 where offered) run in tests, instead
of a cleartext HTTP/1.1 path no production deployment takes.

Two listeners, because ALPN is chosen per connection before any path is seen: one offers
``h2`` and ``http/1.1`` (the services that offer both), one ``http/1.1`` only (HMS, WNS and
MiPush, which do not offer HTTP/2). Both present the certificate the APNs simulator uses,
signed by the lab CA. Each connection goes, by the protocol ALPN picked, to the lab's own
HTTP/2 server (:mod:`pushgate.lab.h2server`, bridged to the ASGI app) or to uvicorn's
httptools protocol. hypercorn serves both protocols too, but measured at about four times the
lab's CPU per FCM request (its stream priority tree and asyncio streams), which slowed every
fan-out test; these two are the cheap paths the lab already had.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import uvicorn
from litestar import Litestar
from uvicorn.server import ServerState

from pushgate.lab.h2server import ConnectionInfo, H2Request, H2Response, H2Server

__all__ = ["serve_tls"]

#: Dropped from an ASGI response sent over HTTP/2 (connection-specific, or added by h2server).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


def _asgi_handler(app: Litestar, server: tuple[str, int]) -> Callable[[H2Request, ConnectionInfo], Any]:
    """Serve an HTTP/2 request from :mod:`h2server` with the ASGI app (one body, no streaming)."""

    async def handle(req: H2Request, conn: ConnectionInfo) -> H2Response:
        path, _, query = req.path.partition("?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "2",
            "method": req.method,
            "scheme": "https" if conn.tls else "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req.headers.items()],
            "server": server,
            "client": None,
            "state": {},
        }
        pending = [{"type": "http.request", "body": req.body, "more_body": False}]
        status, headers, chunks = 500, [], []

        async def receive() -> dict[str, Any]:
            return pending.pop() if pending else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    key = bytes(name).decode("latin-1").lower()
                    if key not in _HOP_BY_HOP:
                        headers.append((key, bytes(value).decode("latin-1")))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)  # type: ignore[arg-type]
        return H2Response(status, headers, b"".join(chunks))

    return handle


class _AlpnSwitch(asyncio.Protocol):
    """Hands a TLS connection to the HTTP/2 or the HTTP/1.1 protocol, by what ALPN picked."""

    def __init__(self, h2: Callable[[], asyncio.Protocol], http1: Callable[[], asyncio.Protocol]) -> None:
        self._h2, self._http1 = h2, http1
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        self._inner = self._h2() if alpn == "h2" else self._http1()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        assert self._inner is not None
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def _context(cert_file: Path, key_file: Path, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.set_alpn_protocols(alpn)
    return ctx


async def serve_tls(
    listeners: list[tuple[Litestar, socket.socket, list[str]]], cert_file: Path, key_file: Path
) -> list[asyncio.Server]:
    """Serve each ``(app, bound socket, ALPN protocols)`` over TLS.

    The sockets are bound (and listening) before this runs, so their ports could be written into
    the credentials. HTTP/2 advertises 100 concurrent streams per connection, as Google's front
    ends do.
    """
    servers = []
    state = ServerState()
    loop = asyncio.get_running_loop()
    for app, sock, alpn in listeners:
        config = uvicorn.Config(app, http="httptools", lifespan="off", log_level="warning", access_log=False)
        config.load()
        h2 = H2Server(_asgi_handler(app, sock.getsockname()[:2]), initial_max_streams=100)

        def http1(config: uvicorn.Config = config) -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=state, app_state={})  # type: ignore[call-arg]

        def switch(h2: H2Server = h2, http1: Callable[[], asyncio.Protocol] = http1) -> asyncio.Protocol:
            return _AlpnSwitch(lambda: h2.protocol(True), http1)

        servers.append(await loop.create_server(switch, sock=sock, ssl=_context(cert_file, key_file, alpn)))
    return servers
