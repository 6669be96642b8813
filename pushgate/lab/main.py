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

import uvicorn

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

    def __init__(self, config: uvicorn.Config, announce: str) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self._announce, flush=True)


def run(
    host: str = "127.0.0.1",
    port: int = 8687,
    write_credentials: pathlib.Path | None = None,
    lean: bool = False,
) -> None:
    """Serve the lab until interrupted (blocking)."""
    base_url = public_base_url(host, port)
    creds = None
    if write_credentials is not None:
        creds = lab_credentials.write_credentials(write_credentials, base_url)
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
    server.run()
    if not server.started:
        sys.exit(1)
