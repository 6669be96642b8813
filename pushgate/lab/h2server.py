"""A small HTTP/2-only server (TLS with ALPN ``h2``, TLS without ALPN, and cleartext h2c).

The APNs simulator needs control an ASGI server does not give: APNs advertises
``SETTINGS_MAX_CONCURRENT_STREAMS = 1`` until the first request with a valid token and raises it
afterwards *on that connection*, and the lab must count open streams per connection to prove a
client never exceeds what was advertised. hypercorn fixes its SETTINGS at the handshake and
hides the ``h2`` connection from the app, so this module drives the ``h2`` state machine
directly on asyncio (the same library hypercorn uses underneath). It also serves the other
HTTP/2 simulators (FCM, OAuth, Web Push) through :mod:`pushgate.lab.tls`, because it costs a
fraction of hypercorn's CPU per request.

A peer opening more streams than the acknowledged limit is a connection error in ``h2``
(``TooManyStreamsError`` → GOAWAY); the server counts it as a violation and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

__all__ = ["ConnectionInfo", "H2Request", "H2Response", "H2Server", "H2Stats"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class H2Request:
    method: str
    path: str
    #: Lower-case names; a repeated header keeps its last value (``duplicates`` lists names seen twice).
    headers: dict[str, str]
    body: bytes
    duplicates: frozenset[str] = frozenset()


@dataclass(slots=True)
class H2Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(slots=True)
class H2Stats:
    """Counters across every connection of one server (or several sharing this object)."""

    connections_total: int = 0
    connections_open: int = 0
    #: Highest number of streams open at once on any one connection.
    max_concurrent_streams_observed: int = 0
    #: Streams a peer opened beyond the advertised (acknowledged) limit.
    stream_limit_violations: int = 0
    requests: int = 0

    def reset(self) -> None:
        self.connections_total = self.connections_open
        self.max_concurrent_streams_observed = 0
        self.stream_limit_violations = 0
        self.requests = 0


class ConnectionInfo:
    """What a handler may know and change about the connection a request came on."""

    _ids = itertools.count(1)

    def __init__(self, protocol: _H2Protocol, tls: bool, alpn: str | None, peer_cert: bytes | None) -> None:
        self.id = next(self._ids)
        self.tls = tls
        self.alpn = alpn
        #: The client certificate (DER) if the peer presented one the TLS layer verified.
        self.peer_cert = peer_cert
        #: Free per-connection state for the simulator (JWT in use, authenticated, ...).
        self.state: dict[str, Any] = {}
        self._protocol = protocol

    @property
    def max_concurrent_streams(self) -> int:
        """The value last advertised to the peer (it applies once the peer acknowledges it)."""
        return self._protocol.advertised

    def set_max_concurrent_streams(self, value: int) -> None:
        """Send a SETTINGS frame with a new limit (before the response that prompted it)."""
        self._protocol.advertise(value)


Handler = Callable[[H2Request, ConnectionInfo], Awaitable[H2Response]]


class _H2Protocol(asyncio.Protocol):
    def __init__(self, server: H2Server, tls: bool) -> None:
        self.server = server
        self.tls = tls
        self.advertised = server.initial_max_streams
        self.transport: asyncio.Transport | None = None
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=True)
        )
        self.info: ConnectionInfo | None = None
        self.bodies: dict[int, bytearray] = {}
        self.heads: dict[int, list[tuple[bytes, bytes]]] = {}
        self.open_streams: set[int] = set()
        self.pending: dict[int, bytes] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        alpn = None
        peer_cert = None
        sslobj = self.transport.get_extra_info("ssl_object")
        if sslobj is not None:
            alpn = sslobj.selected_alpn_protocol()
            peer_cert = sslobj.getpeercert(binary_form=True)
        self.info = ConnectionInfo(self, self.tls, alpn, peer_cert)
        stats = self.server.stats
        stats.connections_total += 1
        stats.connections_open += 1
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.advertised,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        self.conn.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.stats.connections_open -= 1
        for task in self.tasks:
            task.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.TooManyStreamsError:
            self.server.stats.stream_limit_violations += 1
            log.warning("h2: peer exceeded SETTINGS_MAX_CONCURRENT_STREAMS=%s; closing", self.advertised)
            self._close()
            return
        except h2.exceptions.ProtocolError as exc:
            log.info("h2: protocol error from peer: %s", exc)
            self._close()
            return
        for event in events:
            self._on_event(event)
        self._flush()

    # ------------------------------------------------------------------ h2 events

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            self.heads[sid] = list(event.headers or ())
            self.bodies[sid] = bytearray()
            self.open_streams.add(sid)
            stats = self.server.stats
            stats.max_concurrent_streams_observed = max(
                stats.max_concurrent_streams_observed, len(self.open_streams)
            )
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            if sid in self.bodies and event.data:
                self.bodies[sid] += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.StreamEnded):
            self._dispatch(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._forget(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            for sid in list(self.pending):
                self._pump(sid)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._close()

    def _dispatch(self, sid: int) -> None:
        raw = self.heads.pop(sid, None)
        body = self.bodies.pop(sid, None)
        if raw is None or body is None:
            return
        headers: dict[str, str] = {}
        seen: set[str] = set()
        dups: set[str] = set()
        for name_b, value_b in raw:
            name = name_b.decode("latin-1").lower()
            if name in seen and not name.startswith(":"):
                dups.add(name)
            seen.add(name)
            headers[name] = value_b.decode("latin-1")
        request = H2Request(
            method=headers.pop(":method", ""),
            path=headers.pop(":path", ""),
            headers={k: v for k, v in headers.items() if not k.startswith(":")},
            body=bytes(body),
            duplicates=frozenset(dups),
        )
        self.server.stats.requests += 1
        task = asyncio.ensure_future(self._respond(sid, request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _respond(self, sid: int, request: H2Request) -> None:
        assert self.info is not None
        try:
            response = await self.server.handler(request, self.info)
        except Exception:
            log.exception("h2: handler failed")
            response = H2Response(
                500, [("content-type", "application/json")], b'{"reason":"InternalServerError"}'
            )
        if self.transport is None or sid not in self.open_streams:
            return
        headers = [(":status", str(response.status)), *response.headers]
        if response.body:
            headers.append(("content-length", str(len(response.body))))
        try:
            self.conn.send_headers(sid, headers, end_stream=not response.body)
        except h2.exceptions.StreamClosedError:
            self._forget(sid)
            return
        if response.body:
            self.pending[sid] = response.body
            self._pump(sid)
        else:
            self._forget(sid)
        self._flush()

    def _pump(self, sid: int) -> None:
        """Send as much of a response body as flow control allows; the rest waits for WINDOW_UPDATE."""
        data = self.pending.get(sid, b"")
        try:
            while data:
                size = min(
                    self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(data)
                )
                if size <= 0:
                    break
                self.conn.send_data(sid, data[:size])
                data = data[size:]
            if data:
                self.pending[sid] = data
                return
            self.conn.end_stream(sid)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self._forget(sid)
        self._flush()

    def _forget(self, sid: int) -> None:
        self.open_streams.discard(sid)
        self.pending.pop(sid, None)
        self.heads.pop(sid, None)
        self.bodies.pop(sid, None)

    # ------------------------------------------------------------------ helpers

    def advertise(self, value: int) -> None:
        if value != self.advertised:
            self.advertised = value
            self.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: value})
            self._flush()

    def _flush(self) -> None:
        if self.transport is not None:
            out = self.conn.data_to_send()
            if out:
                self.transport.write(out)

    def _close(self) -> None:
        self._flush()
        if self.transport is not None:
            self.transport.close()


def tls_context(cert_file: str, key_file: str, client_ca_file: str | None = None) -> ssl.SSLContext:
    """A server context offering ALPN ``h2`` (a client sending no ALPN is served h2 anyway, as
    APNs does: aioapns never sets ALPN). With ``client_ca_file`` a client certificate is asked for
    (optional) and verified, for APNs certificate auth."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols(["h2"])
    if client_ca_file is not None:
        ctx.load_verify_locations(client_ca_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class H2Server:
    """Serves ``handler`` on any number of listening sockets (TLS or cleartext)."""

    def __init__(
        self, handler: Handler, *, initial_max_streams: int = 100, stats: H2Stats | None = None
    ) -> None:
        self.handler = handler
        self.initial_max_streams = initial_max_streams
        self.stats = stats or H2Stats()
        self._servers: list[asyncio.Server] = []

    def protocol(self, tls: bool) -> asyncio.Protocol:
        """A protocol for one connection, for a listener that chooses the server per connection."""
        return _H2Protocol(self, tls)

    async def listen(self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None) -> None:
        """Start accepting on an already bound socket (bound early so its port can be published)."""
        loop = asyncio.get_running_loop()
        tls = ssl_context is not None
        server = await loop.create_server(lambda: _H2Protocol(self, tls), sock=sock, ssl=ssl_context)
        self._servers.append(server)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
