"""Property: what the outbound rules accept is where the HTTP client connects, and nothing
non-public is ever connected to without the operator's allowance (issue 9, item 1).

URLs are generated in the spellings attackers use: numeric forms of an address (decimal, hex,
octal, short, leading zeros), percent-encoded and full-width digits, Unicode and IDNA names,
trailing dots, user information, backslashes, IPv6 forms that embed IPv4, odd ports. Every one
is sent through the production transport (:class:`PyreqwestTransport`) with a scripted
resolver, at a listening socket on loopback that records each connection and the ``Host`` it
was asked for.

(a) With the lab allowance (loopback allowed), a URL the rules accept reaches the listener
    asking for exactly the host the rules saw (and resolved), and a URL they refuse never
    reaches it.
(b) Without any allowance, every URL (all of them name a non-public address, literally or
    through the resolver) is refused before a connection is made: the listener sees nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import socketserver
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushgate.domain.urls import Allowance, UrlRefused, parse_target
from pushgate.providers.http import PyreqwestTransport
from pushgate.providers.outbound import OutboundPolicy, OutboundRefused
from pushgate.providers.transport import HttpRequest, TransportError

#: Non-public IPv4 addresses the generated URLs name (loopback first: the one the lab may reach).
V4 = ["127.0.0.1", "127.0.0.2", "10.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "192.168.1.1"]
V6 = [
    "::1",
    "::ffff:127.0.0.1",
    "0:0:0:0:0:0:0:1",
    "::ffff:7f00:1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "fe80::1",
]
NAMES = [
    "loop.test",
    "LOOP.Test",
    "l\u00f6\u00f6p.test",
    "xn--lp-eiaa.test",
    "\uff4c\uff4f\uff4f\uff50.test",
    "loop.test.",
    "%6coop.test",
    "a_b-1.test",
    "metadata.google.internal",
    "localhost",
]
FULL_WIDTH = str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19")


def _spell_v4(address: str, form: str) -> str:
    parts = [int(p) for p in address.split(".")]
    value = int(ipaddress.IPv4Address(address))
    return {
        "dotted": address,
        "decimal": str(value),
        "hex": hex(value),
        "octal_parts": ".".join(f"0{p:o}" for p in parts),
        "hex_parts": ".".join(hex(p) for p in parts),
        "short": f"{parts[0]}.{value & 0xFFFFFF}",
        "zeros": ".".join(f"{p:03d}" for p in parts),
        "percent": "".join(f"%{ord(c):02x}" if c.isdigit() else c for c in address),
        "full_width": address.translate(FULL_WIDTH),
    }[form]


hosts = st.one_of(
    st.builds(
        _spell_v4,
        st.sampled_from(V4),
        st.sampled_from(
            [
                "dotted",
                "decimal",
                "hex",
                "octal_parts",
                "hex_parts",
                "short",
                "zeros",
                "percent",
                "full_width",
            ]
        ),
    ),
    st.sampled_from(V6).map(lambda a: f"[{a}]"),
    st.sampled_from(NAMES),
)


@dataclass
class Case:
    url: str
    #: What the scripted resolver answers for any name.
    resolves_to: str


@st.composite
def cases(draw: st.DrawFn, port: int) -> Case:
    scheme = draw(st.sampled_from(["http", "HTTP", "https"]))
    userinfo = draw(st.sampled_from(["", "", "", "user@", "u:p@", "push.example.com@"]))
    host = draw(hosts)
    tail = draw(st.sampled_from(["", "", "", "\\.notify.windows.com", "\\@evil.example"]))
    port_text = draw(
        st.sampled_from([f":{port}", f":{port}", f":0{port}", f":{str(port).translate(FULL_WIDTH)}", ""])
    )
    path = draw(st.sampled_from(["/push/abc", "/?token=x", "/a\\b", ""]))
    return Case(f"{scheme}://{userinfo}{host}{tail}{port_text}{path}", draw(st.sampled_from(V4 + V6[:2])))


@dataclass
class Listener:
    """A dual-stack HTTP/1.1 listener on loopback that records connections and Host headers."""

    port: int = 0
    connections: int = 0
    hosts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    seen = Listener()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            with seen.lock:
                seen.connections += 1
            host = ""
            for raw in iter(self.rfile.readline, b""):
                line = raw.decode("latin-1").strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                if name.lower() == "host":
                    host = value.strip()
            with seen.lock:
                seen.hosts.append(host)
            self.wfile.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")

    server = _Server(("::", 0), Handler)
    seen.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield seen
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class Resolver:
    def __init__(self) -> None:
        self.answer = "127.0.0.1"
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        return [self.answer]


def _kind(host: str) -> str:
    try:
        return f"IPv{ipaddress.ip_address(host).version}"
    except ValueError:
        return "name"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _send(loop: asyncio.AbstractEventLoop, transport: PyreqwestTransport, url: str) -> BaseException | None:
    async def go() -> BaseException | None:
        try:
            await transport.request(HttpRequest("GET", url, timeout=5.0))
        except TransportError as exc:
            return exc
        return None

    return loop.run_until_complete(go())


def test_accepted_urls_connect_to_the_host_that_was_checked(
    listener: Listener, loop: asyncio.AbstractEventLoop
) -> None:
    resolver = Resolver()
    transport = PyreqwestTransport(
        timeout=5.0, connect_timeout=2.0, outbound=OutboundPolicy(Allowance(lab=True), resolver=resolver)
    )
    reached: list[str] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cases(listener.port))
    def check(case: Case) -> None:
        resolver.answer, resolver.asked = "127.0.0.1", []
        before_conn, before_hosts = listener.connections, len(listener.hosts)
        try:
            target = parse_target(case.url)
        except UrlRefused:
            target = None
        error = _send(loop, transport, case.url)
        if target is None:
            assert isinstance(error, OutboundRefused), (case, error)
            assert listener.connections == before_conn, case
            return
        if target.address is None:
            assert set(resolver.asked) <= {target.host}, (case, resolver.asked)
        if isinstance(error, OutboundRefused):
            assert listener.connections == before_conn, case
            return
        if target.port != listener.port or target.scheme != "http":
            return  # another port (nothing listens) or TLS to a cleartext listener
        assert error is None, (case, error)
        # (Empty entries are earlier TLS attempts at the cleartext listener, finishing late.)
        asked = [h for h in listener.hosts[before_hosts:] if h]
        assert asked == [f"{_bracketed(target.host)}:{target.port}"], case
        reached.append(target.host)

    try:
        check()
    finally:
        loop.run_until_complete(transport.aclose())
    # Not vacuous: names, IPv4 and IPv6 hosts were among those that got through.
    kinds = {_kind(h) for h in reached}
    assert kinds == {"name", "IPv4", "IPv6"}, sorted(set(reached))


def test_nothing_non_public_is_connected_to_without_the_allowance(
    listener: Listener, loop: asyncio.AbstractEventLoop
) -> None:
    resolver = Resolver()
    transport = PyreqwestTransport(
        timeout=5.0, connect_timeout=2.0, outbound=OutboundPolicy(resolver=resolver)
    )
    before = listener.connections

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cases(listener.port))
    def check(case: Case) -> None:
        resolver.answer = case.resolves_to
        error = _send(loop, transport, case.url)
        assert isinstance(error, OutboundRefused), (case, error)
        assert listener.connections == before, case

    try:
        check()
    finally:
        loop.run_until_complete(transport.aclose())
