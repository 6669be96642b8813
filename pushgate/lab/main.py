"""Runs the provider lab as a standalone HTTP/1.1 server.

`run()` is what `pushgate lab` and `python -m pushgate.lab` call. It serves plain HTTP on
uvicorn + uvloop and prints exactly one line, ``pushgate lab listening on http://HOST:PORT``,
once the socket accepts connections, so a parent process can wait for it.

Lean mode (``lean=True`` / ``--lean``) keeps only per-provider counters (`GET /ledger/stats`)
and no ledger items, so a long benchmark does not grow memory; every protocol check
(OAuth, VAPID, decryption, validation, faults) still runs.
"""

from __future__ import annotations

import pathlib
import socket
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import uvicorn

from pushgate.lab import apns as lab_apns
from pushgate.lab import credentials as lab_credentials
from pushgate.lab.app import build_state, create_app


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

    #: Started in the same event loop before the readiness line (the APNs HTTP/2 listeners).
    extra_startup: Callable[[], Awaitable[None]] | None = None

    def __init__(self, config: uvicorn.Config, announce: str) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            if self.extra_startup is not None:
                await self.extra_startup()
            print(self._announce, flush=True)


def run(
    host: str = "127.0.0.1",
    port: int = 8687,
    write_credentials: pathlib.Path | None = None,
    lean: bool = False,
    apns_port: int | None = None,
) -> None:
    """Serve the lab until interrupted (blocking).

    The APNs simulator is HTTP/2-only, so it listens on its own ports in the same process:
    ``apns_port`` (default ``port + 1``) for HTTP/2 over TLS and the next one for cleartext h2c.
    """
    base_url = public_base_url(host, port)
    apns_tls = lab_apns.bind_listener(host, apns_port or port + 1, fallback=apns_port is None)
    apns_h2c = lab_apns.bind_listener(host, apns_tls.getsockname()[1] + 1, fallback=True)
    apns_urls = lab_apns.listener_urls(apns_tls, apns_h2c, urlsplit(base_url).hostname or "127.0.0.1")
    creds = None
    if write_credentials is not None:
        creds = lab_credentials.write_credentials(write_credentials, base_url, apns_urls)
    state = build_state(base_url, creds, lean=lean)
    config = uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        loop="uvloop",
        http="auto",  # httptools when installed
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = _AnnouncingServer(config, f"pushgate lab listening on {base_url}")

    async def start_apns() -> None:
        await lab_apns.start_listeners(state, apns_tls, apns_h2c)

    server.extra_startup = start_apns
    server.run()
    if not server.started:
        sys.exit(1)
