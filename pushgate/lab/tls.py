"""The simulated services' TLS listeners, served by hypercorn in the lab's event loop.

The real FCM, OAuth, Web Push, HMS, WNS and MiPush endpoints are HTTPS, and FCM and the push
services negotiate HTTP/2 by ALPN. Serving the lab's stand-ins the same way is what makes
pushgate's production transport (TLS, a trusted CA, HTTP/2 where offered) run in tests, instead
of a cleartext HTTP/1.1 path no production deployment takes. uvicorn speaks HTTP/1.1 only, so
these listeners use hypercorn; the control routes stay on uvicorn's cleartext port.

Two listeners, because ALPN is chosen per connection before any path is seen: one offers
``h2`` and ``http/1.1`` (the services that offer both), one ``http/1.1`` only (HMS, WNS and
MiPush, which do not offer HTTP/2). Both present the certificate the APNs simulator uses,
signed by the lab CA.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any, cast

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from litestar import Litestar

__all__ = ["serve_tls"]


def _config(cert_file: Path, key_file: Path, alpn: list[str]) -> Config:
    config = Config()
    config.certfile = str(cert_file)
    config.keyfile = str(key_file)
    config.alpn_protocols = alpn
    # Quiet: the lab's first line on stdout is its readiness line, which parents wait for.
    config.loglevel = "WARNING"
    config.accesslog = None
    config.graceful_timeout = 1.0
    # 100 concurrent streams per connection, as Google's front ends advertise. More is slower,
    # not faster: hypercorn's stream priority tree costs O(open streams) per stream closed.
    config.h2_max_concurrent_streams = 100
    # Connections live as long as a client keeps them (pushgate's pool drops idle ones after
    # 90 s): a server closing first races the client's next request on that connection.
    config.keep_alive_timeout = 300.0
    config.keep_alive_max_requests = 10**9
    return config


async def serve_tls(
    listeners: list[tuple[Litestar, socket.socket, list[str]]],
    cert_file: Path,
    key_file: Path,
    stop: asyncio.Event,
) -> list[asyncio.Task[None]]:
    """Start serving each ``(app, bound socket, ALPN protocols)`` over TLS until ``stop`` is set.

    The sockets are bound (and listening) before this runs, so their ports could be written into
    the credentials; connections made before the tasks start simply wait in the backlog.
    """
    tasks = []
    for app, sock, alpn in listeners:
        config = _config(cert_file, key_file, alpn)
        serving = worker_serve(
            wrap_app(cast(Any, app), config.wsgi_max_body_size, "asgi"),  # an ASGI app by protocol
            config,
            sockets=Sockets(secure_sockets=[sock], insecure_sockets=[], quic_sockets=[]),
            shutdown_trigger=stop.wait,
        )
        tasks.append(asyncio.ensure_future(serving))
    await asyncio.sleep(0)
    return tasks
