"""Runs the provider lab as a standalone program.

`run()` is what `pushgate lab` and `python -m pushgate.lab` call. The control routes (health,
ledger, faults, minting subscriptions and channels) are cleartext HTTP/1.1 on uvicorn + uvloop
on ``PORT``; the simulated services are HTTPS with the lab CA, as the real ones are: FCM, its
OAuth endpoint and Web Push on ``TLS_PORT`` (HTTP/2 or 1.1 by ALPN), HMS, WNS and MiPush on the
port after it (HTTP/1.1), APNs on its own HTTP/2 ports. It prints exactly one line,
``pushgate lab listening on http://HOST:PORT``, once every socket accepts connections, so a
parent process can wait for it.

Plain mode (``plain=True`` / ``--plain``) serves every simulated service except APNs on the
cleartext control port instead, for benchmarks that measure pushgate rather than TLS.

Lean mode (``lean=True`` / ``--lean``) keeps only per-provider counters (`GET /ledger/stats`)
and no ledger items, so a long benchmark does not grow memory; every protocol check
(OAuth, VAPID, decryption, validation, faults) still runs.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import uvicorn

from pushgate.lab import apns as lab_apns
from pushgate.lab import credentials as lab_credentials
from pushgate.lab.apns_credentials import SERVER_CERT_FILE, SERVER_KEY_FILE
from pushgate.lab.app import build_state, create_app
from pushgate.lab.credentials import ServiceUrls
from pushgate.lab.listeners import bind_listener, listener_urls
from pushgate.lab.state import LabState
from pushgate.lab.tls import serve_tls


def public_base_url(host: str, port: int) -> str:
    """The origin clients should use: a wildcard bind is reached over loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class _AnnouncingServer(uvicorn.Server):
    """Prints the readiness line only after the listening sockets exist."""

    #: Started in the same event loop before the readiness line (the APNs and TLS listeners).
    extra_startup: Callable[[], Awaitable[None]] | None = None
    #: Listeners started beside uvicorn, closed when it shuts down.
    extra_servers: list[asyncio.Server]

    def __init__(self, config: uvicorn.Config, announce: str) -> None:
        super().__init__(config)
        self._announce = announce
        self.extra_servers = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            if self.extra_startup is not None:
                await self.extra_startup()
            print(self._announce, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for extra in self.extra_servers:
            extra.close()
        await super().shutdown(sockets)


def run(
    host: str = "127.0.0.1",
    port: int = 8687,
    write_credentials: pathlib.Path | None = None,
    lean: bool = False,
    apns_port: int | None = None,
    tls_port: int | None = None,
    plain: bool = False,
) -> None:
    """Serve the lab until interrupted (blocking).

    The APNs simulator is HTTP/2-only, so it listens on its own ports in the same process:
    ``apns_port`` (default ``port + 1``) for HTTP/2 over TLS and the next one for cleartext h2c.
    The other services listen on ``tls_port`` (default ``port + 3``) and the port after it,
    unless ``plain``. Default ports that are taken are replaced by free ones; the written
    credentials always name the ports actually bound.
    """
    base_url = public_base_url(host, port)
    public_host = urlsplit(base_url).hostname or "127.0.0.1"
    apns_tls = bind_listener(host, apns_port or port + 1, fallback=apns_port is None)
    apns_h2c = bind_listener(host, apns_tls.getsockname()[1] + 1, fallback=True)
    apns_urls = listener_urls(apns_tls, apns_h2c, public_host)
    service_socks: tuple[socket.socket, socket.socket] | None = None
    services = ServiceUrls.plain(base_url)
    if not plain:
        h2_sock = bind_listener(host, tls_port or port + 3, fallback=tls_port is None)
        http1_sock = bind_listener(host, h2_sock.getsockname()[1] + 1, fallback=True)
        service_socks = (h2_sock, http1_sock)
        services = ServiceUrls(*listener_urls(h2_sock, http1_sock, public_host, tls=True))
    creds = None
    if write_credentials is not None:
        creds = lab_credentials.write_credentials(write_credentials, base_url, apns_urls, services)
    state = build_state(base_url, creds, lean=lean, services=services)
    config = uvicorn.Config(
        create_app(state, "all" if plain else "control"),
        host=host,
        port=port,
        loop="uvloop",
        http="auto",  # httptools when installed
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = _AnnouncingServer(config, f"pushgate lab listening on {base_url}")

    async def start_listeners() -> None:
        await lab_apns.start_listeners(state, apns_tls, apns_h2c)
        if service_socks is not None:
            server.extra_servers += await _start_services(state, *service_socks)

    server.extra_startup = start_listeners
    server.run()
    if not server.started:
        sys.exit(1)


async def _start_services(
    state: LabState, h2_sock: socket.socket, http1_sock: socket.socket
) -> list[asyncio.Server]:
    """The TLS listeners, with the certificate the APNs listener already wrote (lab CA)."""
    apns = state.credentials.apns
    return await serve_tls(
        [
            (create_app(state, "h2"), h2_sock, ["h2", "http/1.1"]),
            (create_app(state, "http1"), http1_sock, ["http/1.1"]),
        ],
        apns.path(SERVER_CERT_FILE),
        apns.path(SERVER_KEY_FILE),
    )
