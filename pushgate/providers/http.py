"""The production :class:`Transport`: one pooled pyreqwest client shared by every provider.

pyreqwest (Rust reqwest/hyper under a Python API) was chosen by measurement (docs/design.md): it
multiplexes HTTP/2 over TLS and costs a fraction of httpx's CPU per request. ``.http2(True)``
lets ALPN pick h2 on https origins while plain ``http://`` origins (local mocks, the provider
lab's ``--plain`` mode) keep speaking HTTP/1.1 — reqwest only upgrades via ALPN, never by prior
knowledge.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path
from typing import Any

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError
from pyreqwest.http import Url
from pyreqwest.response import Response

from pushgate.providers.outbound import OutboundPolicy
from pushgate.providers.transport import (
    HttpRequest,
    HttpResponse,
    ResponseTooLarge,
    Transport,
    TransportError,
)

__all__ = ["PyreqwestTransport", "create_transport", "parse_retry_after"]

_USER_AGENT = "pushgate/0.1"
#: Clients pinned to a resolved address, kept per (host, port, address). Each is a connection
#: pool of its own and costs a few ms to build, so the busiest stay; an evicted one is dropped,
#: not closed (requests in flight on it finish).
PINNED_CLIENTS = 128
#: ``engine.max_response_bytes``' default: real answers are a few hundred bytes.
MAX_RESPONSE_BYTES = 64 * 1024


_URL_IN_MESSAGE = re.compile(r"(for url \()([a-z][a-z0-9+.-]*://[^/)\s]*)[^)\s]*(\))", re.IGNORECASE)


def _describe(exc: PyreqwestError) -> str:
    """Flatten pyreqwest's cause chain ("connection error: tcp connect error: refused ...").

    URLs are cut to their origin: a Web Push endpoint path *is* the device's token, and this
    text ends up in delivery records and logs.
    """
    parts = [exc.message]
    details = getattr(exc, "details", None)
    if isinstance(details, dict):
        for cause in details.get("causes") or ():
            msg = cause.get("message") if isinstance(cause, dict) else None
            if msg and msg not in parts:
                parts.append(msg)
    return _URL_IN_MESSAGE.sub(r"\1\2/…\3", ": ".join(parts))


class PyreqwestTransport(Transport):
    """Long-lived, pooled HTTP client; HTTP/2 where the server negotiates it.

    Every provider in a process shares one instance, so connections to a provider host are
    reused across batches and apps. Redirects are not followed (a push service redirecting is a
    misconfiguration we want to see), response decompression is off (bodies are tiny) and
    environment proxies are ignored (they would decide where requests go).

    Where a request may go is :class:`OutboundPolicy`'s decision (``outbound``), made for every
    request. A URL whose host is an address uses the shared client; a host name is sent through
    a client pinned to the address the policy checked (``ClientBuilder.resolve``), since
    pyreqwest offers no resolver callback: what was checked is what is connected to.
    """

    __slots__ = ("_client", "_client_settings", "_max_body", "_pinned", "_timeouts", "outbound")

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        connect_timeout: float | None = 5.0,
        max_connections: int | None = None,
        pool_max_idle_per_host: int | None = None,
        pool_idle_timeout: float = 90.0,
        http2: bool = True,
        user_agent: str = _USER_AGENT,
        http2_prior_knowledge: bool = False,
        ca_pem: bytes | None = None,
        identity_pem: bytes | None = None,
        outbound: OutboundPolicy | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        """``http2_prior_knowledge`` speaks only HTTP/2 (h2c on ``http://``, ALPN ``h2`` on
        ``https://``): APNs needs it, since reqwest never upgrades a cleartext connection.
        ``ca_pem`` adds trusted roots (a lab's self-signed CA); ``identity_pem`` is a client
        certificate + private key in PEM (APNs certificate auth). ``outbound``: where requests
        may go (default: public addresses over https only). ``max_response_bytes`` is where
        reading an answer's body stops (:func:`read_capped`)."""
        self.outbound = outbound or OutboundPolicy()
        self._max_body = max_response_bytes
        # Kept as data, not as a closure over ``self``: a cycle would keep a closed transport's
        # clients, and so their connections, alive until the cyclic GC ran.
        self._client_settings: dict[str, Any] = dict(
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            pool_max_idle_per_host=pool_max_idle_per_host,
            pool_idle_timeout=pool_idle_timeout,
            http2=http2,
            user_agent=user_agent,
            http2_prior_knowledge=http2_prior_knowledge,
            ca_pem=ca_pem,
            identity_pem=identity_pem,
        )
        self._client: Client = self._new_builder().build()
        self._pinned: OrderedDict[tuple[str, int, str], Client] = OrderedDict()
        #: Per-request timeout objects, cached: most callers use one or two distinct values.
        self._timeouts: dict[float, timedelta] = {}

    def _new_builder(self) -> ClientBuilder:
        return self._configure(ClientBuilder(), **self._client_settings)

    @staticmethod
    def _configure(
        builder: ClientBuilder,
        *,
        timeout: float,
        connect_timeout: float | None,
        max_connections: int | None,
        pool_max_idle_per_host: int | None,
        pool_idle_timeout: float,
        http2: bool,
        user_agent: str,
        http2_prior_knowledge: bool,
        ca_pem: bytes | None,
        identity_pem: bytes | None,
    ) -> ClientBuilder:
        """One client's settings; the shared client and every pinned one are built alike."""
        builder = (
            builder.no_proxy()
            .http2(http2)
            .timeout(timedelta(seconds=timeout))
            .pool_idle_timeout(timedelta(seconds=pool_idle_timeout))
            .max_connections(max_connections)
            .follow_redirects(False)
            .referer(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .user_agent(user_agent)
            .tcp_keepalive(timedelta(seconds=60))
        )
        if pool_max_idle_per_host is not None:
            # Keep it >= the send concurrency: on HTTP/1.1 every idle connection beyond the cap is
            # closed and must be re-opened on the next burst (measured: ~25% more CPU at 64/200).
            builder = builder.pool_max_idle_per_host(pool_max_idle_per_host)
        if connect_timeout is not None:
            builder = builder.connect_timeout(timedelta(seconds=connect_timeout))
        if http2_prior_knowledge:
            builder = builder.http2_prior_knowledge()
        if ca_pem is not None:
            builder = builder.add_root_certificate_pem(ca_pem)
        if identity_pem is not None:
            builder = builder.identity_pem(identity_pem)
        if http2 or http2_prior_knowledge:
            # Detect dead h2 connections that sit idle between bursts.
            builder = builder.http2_keep_alive_interval(timedelta(seconds=30)).http2_keep_alive_timeout(
                timedelta(seconds=10)
            )
        return builder

    async def _connect_to(self, url: str) -> tuple[Client, Url]:
        """The client and parsed URL a request to ``url`` is made with; raises
        :class:`~pushgate.providers.outbound.OutboundRefused` where pushgate may not connect."""
        route = await self.outbound.route(url)
        if route.pin is None:
            return self._client, route.url
        client = self._pinned.get(route.pin)
        if client is None:
            host, port, address = route.pin
            client = self._new_builder().resolve(host, address, port).build()
            self._pinned[route.pin] = client
            if len(self._pinned) > PINNED_CLIENTS:
                self._pinned.popitem(last=False)
        else:
            self._pinned.move_to_end(route.pin)
        return client, route.url

    async def request(self, req: HttpRequest) -> HttpResponse:
        """Send ``req``; a missing response (refused, reset, timeout) raises :class:`TransportError`."""
        client, url = await self._connect_to(req.url)
        builder = client.request(req.method, url)
        if req.headers:
            builder = builder.headers(req.headers)
        if req.body:
            builder = builder.body_bytes(req.body)
        if req.timeout is not None:
            td = self._timeouts.get(req.timeout)
            if td is None:
                td = self._timeouts[req.timeout] = timedelta(seconds=req.timeout)
            builder = builder.timeout(td)
        try:
            async with builder.build_streamed() as resp:
                body = await read_capped(resp, self._max_body)
                return HttpResponse(resp.status, dict(resp.headers.items()), body)
        except PyreqwestError as exc:
            raise TransportError(_describe(exc)) from exc

    async def aclose(self) -> None:
        """Close pooled connections; the transport is unusable afterwards."""
        pinned, self._pinned = list(self._pinned.values()), OrderedDict()
        for client in (self._client, *pinned):
            await client.close()


async def read_capped(resp: Response, cap: int) -> bytes:
    """The body of a streamed response, read until it ends or passes ``cap`` bytes.

    Past the cap it raises :class:`ResponseTooLarge`; the caller's ``async with`` then closes
    the stream (the connection is dropped, so the server cannot keep sending), and no more than
    ``cap`` + one read buffer was held. An answer that declares its length is read in one call.
    """
    declared = resp.get_header("content-length")
    length = int(declared) if declared is not None and declared.isdigit() else None
    if length is not None and length > cap:
        raise ResponseTooLarge(
            f"answer body of {length:,} bytes is over the {cap:,}-byte cap (engine.max_response_bytes)"
        )
    if length == 0:
        return b""
    reader = resp.body_reader
    chunks: list[bytes] = []
    total = 0
    while (chunk := await reader.read(cap + 1 - total)) is not None:
        chunks.append(chunk.to_bytes())
        total += len(chunks[-1])
        if total > cap:
            raise ResponseTooLarge(
                f"answer body passed the {cap:,}-byte cap (engine.max_response_bytes); reading stopped"
            )
        if total == length:
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def create_transport(
    timeout: float = 10.0,
    *,
    connect_timeout: float | None = 5.0,
    max_connections: int | None = None,
    pool_max_idle_per_host: int | None = None,
    http2: bool = True,
    ca_file: str | None = None,
    outbound: OutboundPolicy | None = None,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> Transport:
    """Build the process-wide provider transport (one per process; close it on shutdown).

    ``ca_file`` (``engine.ca_file``) adds roots to the system's rather than replacing them, so one
    transport reaches both the real providers and a service behind a private CA (the lab).
    ``outbound`` decides where it may connect (default: public addresses over https only).
    """
    ca_pem = None
    if ca_file is not None:
        try:
            ca_pem = Path(ca_file).read_bytes()
        except OSError as exc:
            raise ValueError(f"engine.ca_file: cannot read {ca_file}: {exc.strerror or exc}") from exc
        if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise ValueError(f"engine.ca_file: {ca_file} holds no PEM certificate")
    return PyreqwestTransport(
        timeout=timeout,
        connect_timeout=connect_timeout,
        max_connections=max_connections,
        pool_max_idle_per_host=pool_max_idle_per_host,
        http2=http2,
        ca_pem=ca_pem,
        outbound=outbound,
        max_response_bytes=max_response_bytes,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date).

    Returns ``None`` when absent or unparseable, so callers can fall back to their own backoff;
    dates in the past give ``0``.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, dt.timestamp() - current)
