"""Whether pushgate may connect to a URL, decided when the request is made, and where to connect.

Every provider request goes through :meth:`OutboundPolicy.route` inside the transport, so the
rule holds for every URL whatever its source (a device's Web Push endpoint or WNS channel URI, a
``base_url`` / ``token_url`` from the config file or an uploaded credential) and for rows stored
before the rule existed or before the operator withdrew an allowance.

The text rules are ``domain/urls.py``'s; this module adds what needs the network. A host name
is resolved (through an injectable resolver, cached for ``outbound.dns_cache_seconds``) and
refused unless one of its addresses is public or allowed. The address checked is then *pinned*:
the transport connects to exactly that address (``Route.pin``), so a name that resolves to a
public address for the check and to ``127.0.0.1`` a moment later (DNS rebinding) cannot move the
connection. Decisions are cached per origin, so the hot path costs one dictionary look-up.

A refusal is :class:`OutboundRefused`, a :class:`TransportError` that providers record as the
target's outcome (``payload`` / ``outbound_refused``: no retry, no breaker). Its text is decided
before any connection and never names the port, so delivery errors cannot map open ports.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import msgspec
from pyreqwest.http import Url

from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.urls import (
    LAB_HINT,
    Allowance,
    IpAddress,
    UrlRefused,
    allowance,
    is_loopback,
    is_network,
    parse_target,
    refusal,
    refused_message,
)
from pushgate.providers.base import ProviderConfigError
from pushgate.providers.transport import TransportError

__all__ = [
    "HostPattern",
    "OutboundPolicy",
    "OutboundRefused",
    "OutboundSettings",
    "Resolver",
    "Route",
    "bounded",
    "checked_url",
    "foreign_answer",
    "is_foreign",
    "system_resolver",
    "transport_failure",
]

#: ``(host, port) -> addresses``; raises ``OSError`` when the name does not resolve.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: The error code of a refused target (delivery records, metrics).
REFUSED_CODE = "outbound_refused"
#: Seconds a pinned address is kept after the name stopped resolving to it (still checked).
PIN_MAX_AGE = 300.0
#: Longest error text a provider answer leaves in a delivery record.
MAX_MESSAGE = 300
SHORT_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


#: A host an operator lists: ``push.example.com``, or ``*.example.com`` for any name under it.
HostPattern = Annotated[str, msgspec.Meta(pattern=r"\A(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\Z")]


class OutboundSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``[outbound]``: where pushgate may connect besides public addresses over https."""

    #: Non-public networks (CIDR) pushgate may connect to, e.g. an internal push service:
    #: ``["10.20.0.0/16", "fd00:1::/64"]``. Loopback for the provider lab is
    #: ``devices.allow_loopback_endpoints`` instead.
    allow_networks: list[str] = msgspec.field(default_factory=list)
    #: Hosts, besides each provider's own, that credentials uploaded through the API may name in
    #: a ``base_url`` / ``token_url`` / ``token_uri``.
    upload_hosts: list[HostPattern] = msgspec.field(default_factory=list)
    #: How long a resolved host name's addresses are used before it is resolved again, seconds.
    dns_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30.0

    def __post_init__(self) -> None:
        bad = [n for n in self.allow_networks if not is_network(n)]
        if bad:
            raise ValueError(
                f"allow_networks: {bad[0]!r} is not a network in CIDR notation "
                "(write e.g. ['10.20.0.0/16', 'fd00:1::/64'])"
            )

    def allowance(self, lab: bool) -> Allowance:
        """With the lab flag (``devices.allow_loopback_endpoints``), what the rules take."""
        return allowance(lab, tuple(self.allow_networks))


class OutboundRefused(TransportError):
    """pushgate will not connect there; the message says why and who can allow it."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), off the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def transport_failure(exc: TransportError) -> SendResult:
    """A request that got no answer, as one target's outcome: a refusal is final for that
    target (``payload``: no retry, no breaker); anything else is the network or an answer cut
    at the transport's cap (retry, with the :class:`TransportError`'s own code)."""
    if isinstance(exc, OutboundRefused):
        return SendResult(Outcome.PAYLOAD, error_code=REFUSED_CODE, error_message=str(exc))
    return SendResult(Outcome.PROVIDER_TRANSIENT, error_code=exc.code, error_message=str(exc))


def checked_url(key: str, url: str) -> str:
    """A provider URL from the config or an upload, read as the transport will read it;
    :class:`ProviderConfigError` naming ``key`` otherwise. (Its address is checked when
    connecting: the allowance may differ between then and now.)"""
    try:
        parse_target(url)
    except UrlRefused as exc:
        raise ProviderConfigError(f"{key}: {exc}") from None
    return url


def is_foreign(url: str, hosts: frozenset[str] | None) -> bool:
    """Neither one of the provider's own ``hosts`` nor the lab (loopback): someone else's
    server, whose answers pushgate does not repeat (see :func:`foreign_answer`). ``hosts`` None:
    the operator chose the URL (the config file), so nothing is foreign."""
    if hosts is None:
        return False
    try:
        target = parse_target(url)
    except UrlRefused:
        return True
    if target.host in hosts or target.host == "localhost":
        return False
    return target.address is None or not is_loopback(target.address)


def foreign_answer(result: SendResult, status: int) -> SendResult:
    """A foreign server's answer as a tenant may see it: the class, the HTTP status and a short
    code, never its text (a URL a tenant chose must not turn pushgate into a way to read an
    internal service's answers)."""
    code = result.error_code
    if code is not None and not SHORT_CODE.fullmatch(code):
        code = f"http_{status}"
    message = None
    if result.outcome is not Outcome.SENT:
        message = f"HTTP {status} from a host that is not the provider's own (its answer is not shown)"
    return SendResult(result.outcome, result.provider_message_id, code, message, result.retry_after)


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """An error text fit for a delivery record: control characters escaped, at most ``limit``
    characters."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: the URL as parsed, and the address to pin its host to."""

    url: Url
    #: ``(host, port, address)`` for a host name; None when the host is an address already.
    pin: tuple[str, int, str] | None


@dataclass(slots=True)
class _Decision:
    host: str
    refused: str | None
    pin: tuple[str, int, str] | None
    #: Monotonic time after which a name is resolved again (inf for literal addresses).
    until: float
    #: When the pinned address was first chosen (monotonic).
    pinned_at: float = 0.0


class OutboundPolicy:
    """The allowance, the resolver and the per-origin decisions of one transport."""

    def __init__(
        self,
        allow: Allowance | None = None,
        *,
        resolver: Resolver | None = None,
        dns_cache_seconds: float = 30.0,
        max_origins: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow = allow or Allowance()
        self._resolve = resolver or system_resolver
        self._ttl = dns_cache_seconds
        self._max = max_origins
        self._clock = clock
        #: ``scheme://authority`` as written → decision (insertion order: oldest first).
        self._decisions: dict[str, _Decision] = {}
        self._pending: dict[str, asyncio.Future[_Decision]] = {}

    async def route(self, text: str) -> Route:
        """Where a request to ``text`` connects; :class:`OutboundRefused` when it may not."""
        key = _origin_key(text)
        decision = self._decisions.get(key)
        if decision is None or decision.until <= self._clock():
            decision = await self._decide_once(key, text)
        if decision.refused is not None:
            raise OutboundRefused(decision.refused)
        try:
            # The same origin text as the decision's, so the same host: checked below anyway,
            # since the whole URL is what the request is made with.
            if "\\" in text:
                raise UrlRefused("must not contain a backslash")
            url = Url(text)
        except ValueError as exc:
            raise OutboundRefused(f"refused: the URL {exc}") from None
        if url.host_str != _bracketed(decision.host):
            raise OutboundRefused("refused: the URL's host changed while it was checked")
        return Route(url, decision.pin)

    async def _decide_once(self, key: str, text: str) -> _Decision:
        """One decision per origin at a time: a fan-out to a new host resolves it once."""
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Decision] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            decision = await self._decide(text, self._decisions.get(key))
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            del self._pending[key]
        future.set_result(decision)
        if len(self._decisions) >= self._max:
            self._decisions.pop(next(iter(self._decisions)))
        self._decisions.pop(key, None)
        self._decisions[key] = decision
        return decision

    async def _decide(self, text: str, previous: _Decision | None) -> _Decision:
        try:
            target = parse_target(text)
        except UrlRefused as exc:
            return _Decision("", f"refused: the URL {exc}", None, float("inf"))
        host = target.host
        if target.scheme != "https" and not self.allow.lab:
            why = f"refused: plain http:// to {host}: use https:// (plain http is for the lab: {LAB_HINT})"
            return _Decision(host, why, None, float("inf"))
        if target.address is not None:
            kind = refusal(target.address, self.allow)
            refused = None if kind is None else "refused: " + refused_message(host, kind, target.address)
            return _Decision(host, refused, None, float("inf"))
        until = self._clock() + self._ttl
        try:
            found = await self._resolve(host, target.port)
        except (OSError, UnicodeError) as exc:
            raise TransportError(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
        allowed, first = self._allowed(found)
        if not allowed:
            if first is None:
                raise TransportError(f"cannot resolve {host}: no address")
            why = "refused: " + refused_message(f"{host} resolves to an address that", *first)
            return _Decision(host, why, None, until)
        # Keep the address already pinned while the name still has it, or for up to PIN_MAX_AGE
        # while it is still allowed: a rotating DNS answer must not build a new client (a new
        # pool, new TLS handshakes) at every look-up.
        now = self._clock()
        old = previous.pin[2] if previous is not None and previous.pin is not None else None
        if (
            old is not None
            and previous is not None
            and (old in allowed or (now - previous.pinned_at < PIN_MAX_AGE and self._allowed([old])[0]))
        ):
            return _Decision(host, None, (host, target.port, old), until, previous.pinned_at)
        return _Decision(host, None, (host, target.port, allowed[0]), until, now)

    def _allowed(self, found: Sequence[str]) -> tuple[list[str], tuple[str, IpAddress] | None]:
        """``(addresses pushgate may connect to, (kind, address) of the first refused one)``."""
        allowed: list[str] = []
        first: tuple[str, IpAddress] | None = None
        for raw in found:
            try:
                addr: IpAddress = ipaddress.ip_address(raw.split("%", 1)[0])
            except ValueError:
                continue
            kind = refusal(addr, self.allow)
            if kind is None:
                if str(addr) not in allowed:
                    allowed.append(str(addr))
            elif first is None:
                first = (kind, addr)
        return allowed, first


_ORIGIN = re.compile(r"[^:/?#]*://[^/?#]*")


def _origin_key(text: str) -> str:
    """``scheme://authority`` as written (the decision cache's key); the whole text when the
    URL does not start so (it is refused, once)."""
    m = _ORIGIN.match(text)
    return m.group() if m else text


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
