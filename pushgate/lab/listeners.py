"""Listening sockets bound before the lab starts serving.

The lab writes its credentials (with every service's URL) before its servers run, so it binds
each socket first and names the port it actually got.
"""

from __future__ import annotations

import socket

__all__ = ["bind_listener", "listener_urls"]


def bind_listener(host: str, port: int, *, fallback: bool) -> socket.socket:
    """Bind a listening socket now, so its port is known before the config is written.

    With ``fallback`` (a default port, not one the user asked for) a busy port is replaced by
    any free one; the written ``pushgate-lab.toml`` always names the port actually bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if not fallback:
            sock.close()
            raise
        sock.bind((host, 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def listener_urls(
    first: socket.socket, second: socket.socket, public_host: str, *, tls: bool = False
) -> tuple[str, str]:
    """The origins of two listeners: ``(https://…, http://…)`` for APNs' TLS and h2c pair, or
    two ``https://`` ones with ``tls``."""
    host = f"[{public_host}]" if ":" in public_host and not public_host.startswith("[") else public_host
    return (
        f"https://{host}:{first.getsockname()[1]}",
        f"{'https' if tls else 'http'}://{host}:{second.getsockname()[1]}",
    )
