"""Which outbound URLs pushgate accepts, by their text alone, and which addresses are public.

Pure rules shared by registration (a Web Push endpoint, a WNS channel URI), credential uploads
and the transport, which adds the part that needs the network (``providers/outbound.py``).

Why the HTTP client's own parser (``pyreqwest.http.Url``, the WHATWG parser of Rust's ``url``
crate): two parsers that disagree about where a host ends are a leak. Python's ``urlsplit``
reads ``https://evil.example\\.notify.windows.com/`` as a ``notify.windows.com`` host while the
client connects to ``evil.example``. So a URL is parsed once, by the parser the request uses,
and is accepted only when its host *as written* is the host that parser settles on: numeric
spellings (``0x7f.1``, ``2130706433``, ``0177.0.0.1``), percent-encoded or full-width digits and
Unicode names all normalise to something else and are refused with the spelling to use.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pyreqwest.http import Url

__all__ = [
    "Allowance",
    "IpAddress",
    "IpNetwork",
    "TargetUrl",
    "UrlRefused",
    "allowance",
    "check_target",
    "host_matches",
    "is_loopback",
    "is_network",
    "non_public",
    "parse_target",
    "refusal",
    "refused_message",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What an operator writes to let pushgate reach a non-public network (named in every refusal).
ALLOW_HINT = "the operator can allow a network with [outbound] allow_networks, e.g. ['10.0.0.0/8']"
LAB_HINT = "the operator can allow the provider lab on loopback with devices.allow_loopback_endpoints = true"

_START = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")


#: The longest DNS name (RFC 1035), so an origin also fits its breaker's key column.
MAX_HOST = 253


class UrlRefused(ValueError):
    """pushgate will not connect to this URL; the message says what to write instead."""


@dataclass(frozen=True, slots=True)
class Allowance:
    """What the operator lets pushgate reach beyond public addresses over https."""

    #: ``devices.allow_loopback_endpoints``: the provider lab (plain http, loopback addresses).
    lab: bool = False
    #: ``outbound.allow_networks``: non-public networks pushgate may connect to.
    networks: tuple[IpNetwork, ...] = ()


@functools.lru_cache(maxsize=64)
def allowance(lab: bool, networks: tuple[str, ...] = ()) -> Allowance:
    """The allowance of the settings (cached: registration asks for it on every request)."""
    return Allowance(lab, tuple(ipaddress.ip_network(n, strict=False) for n in networks))


def as_allowance(value: bool | Allowance) -> Allowance:
    """Callers that only know the lab flag pass a bool."""
    return value if isinstance(value, Allowance) else allowance(bool(value))


@dataclass(frozen=True, slots=True)
class TargetUrl:
    """A URL accepted by :func:`parse_target`: the parsed form the request is made with."""

    url: Url
    scheme: str
    #: The host the client connects to: a lower-case name, a dotted quad or an IPv6 address
    #: (without brackets).
    host: str
    port: int
    #: The host as an address when it is one (no name resolution needed).
    address: IpAddress | None

    @property
    def origin(self) -> str:
        return self.url.origin_ascii


def parse_target(text: str) -> TargetUrl:
    """``text`` parsed as the HTTP client parses it, or :class:`UrlRefused` saying why not.

    Refused: a backslash, whitespace or control characters; a scheme other than http(s); user
    information; and any host not written exactly as the client understands it.
    """
    bad = _BAD_CHARS.search(text)
    if bad is not None:
        if bad.group() == "\\":
            raise UrlRefused("must not contain a backslash (clients disagree on where the host ends)")
        raise UrlRefused("must not contain spaces or control characters")
    start = _START.match(text)
    if start is None:
        raise UrlRefused("must start with https:// and a host name")
    scheme, authority = start.group(1).lower(), start.group(2)
    if scheme not in ("http", "https"):
        raise UrlRefused(f"scheme {scheme!r} is not allowed: use https://")
    if "@" in authority:
        raise UrlRefused("must not contain user information (user@ or user:password@ before the host)")
    try:
        url = Url(text)
    except ValueError as exc:
        raise UrlRefused(f"is not a valid URL ({exc})") from None
    host_raw, port_raw = _split_authority(authority)
    port = url.port_or_known_default
    if port is None or port < 1 or (port_raw is not None and port_raw != str(port)):
        raise UrlRefused("the port must be plain decimal digits, 1-65535, without leading zeros")
    host, address = _host(host_raw, url.host_str or "")
    return TargetUrl(url, scheme, host, port, address)


def _split_authority(authority: str) -> tuple[str, str | None]:
    """``(host as written, port as written or None)``; brackets stay on an IPv6 host."""
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = authority[: end + 1], authority[end + 1 :]
    else:
        host, colon, port = authority.partition(":")
        rest = colon + port
    if not host:
        raise UrlRefused("has no host")
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isascii() or not rest[1:].isdigit():
        raise UrlRefused("the port must be plain decimal digits, 1-65535, without leading zeros")
    return host, rest[1:]


def _host(written: str, parsed: str) -> tuple[str, IpAddress | None]:
    """The parser's host, when it is the host as written (case aside)."""
    if written.startswith("["):
        try:
            v6 = ipaddress.IPv6Address(parsed[1:-1])
            same = ipaddress.IPv6Address(written[1:-1]) == v6
        except ValueError:
            same = False
        if not same:
            raise UrlRefused(f"write the IPv6 address as {parsed}")
        return str(v6), v6
    if not written.isascii():
        raise UrlRefused(f"write the host in ASCII (punycode): {parsed}")
    if len(parsed) > MAX_HOST:
        raise UrlRefused(f"the host has {len(parsed)} characters; a DNS name has at most {MAX_HOST}")
    if "%" in written:
        raise UrlRefused(f"percent-encoding is not allowed in the host: write {parsed}")
    if written.endswith("."):
        raise UrlRefused(f"remove the trailing dot from the host: write {parsed.rstrip('.')}")
    try:
        address: IpAddress | None = ipaddress.IPv4Address(parsed)
    except ValueError:
        address = None
    if written.lower() != parsed:
        if address is not None:
            raise UrlRefused(f"write the address as a dotted quad: {parsed}")
        raise UrlRefused(f"write the host as {parsed}")
    if address is None and not _NAME.fullmatch(parsed):
        raise UrlRefused(
            "the host must be a plain host name, an IPv4 dotted quad or a [bracketed] IPv6 address"
        )
    return parsed, address


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, the old compatible form)."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64 or (addr in _COMPAT and int(addr) > 1):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def non_public(addr: IpAddress) -> str | None:
    """What kind of non-public address ``addr`` is (``"a loopback address"``…), or None when public."""
    if addr.is_unspecified:
        return "an unspecified address"
    if addr.is_loopback:
        return "a loopback address"
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_v4(addr)
        if inner is not None:
            kind = non_public(inner)
            return f"an IPv6 form of {kind}" if kind else None
    if addr.is_link_local:
        return "a link-local address"
    if addr.is_multicast:
        return "a multicast address"
    if addr in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if addr.is_private:
        return "a private address"
    if not addr.is_global:
        return "a reserved address"
    return None


def is_loopback(addr: IpAddress) -> bool:
    """Loopback, also in its IPv4-mapped IPv6 form (what the lab flag allows)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def refused_message(host: str, kind: str, addr: IpAddress | None = None) -> str:
    """One wording for every refused address: what it is and who can allow what."""
    hint = LAB_HINT if addr is not None and is_loopback(addr) else ALLOW_HINT
    return f"{host} is {kind}: pushgate connects only to public addresses over https ({hint})"


def refusal(addr: IpAddress, allow: Allowance) -> str | None:
    """Why pushgate may not connect to ``addr`` (its kind), or None when it may."""
    kind = non_public(addr)
    if kind is None:
        return None
    if allow.lab and is_loopback(addr):
        return None
    inner = _embedded_v4(addr) if isinstance(addr, ipaddress.IPv6Address) else None
    if any(addr in net or (inner is not None and inner in net) for net in allow.networks):
        return None
    return kind


def is_local_name(host: str) -> bool:
    """Names that only mean something on the operator's own network."""
    return host == "localhost" or host.endswith(_LOCAL_SUFFIXES)


def check_target(text: str, allow: bool | Allowance) -> TargetUrl:
    """Everything that can be decided without the network: the syntax, the scheme, a literal
    address's kind and local names. The transport repeats the address check at connect time,
    after resolving names, so this is the early, clear answer rather than the only guard."""
    allow = as_allowance(allow)
    target = parse_target(text)
    if target.scheme != "https" and not allow.lab:
        raise UrlRefused(f"must use https:// (plain http:// is for the provider lab: {LAB_HINT})")
    if target.address is not None:
        kind = refusal(target.address, allow)
        if kind is not None:
            raise UrlRefused(refused_message(target.host, kind, target.address))
    elif is_local_name(target.host) and not allow.lab and not allow.networks:
        raise UrlRefused(
            f"{target.host} is a local name: pushgate connects only to public hosts ({ALLOW_HINT})"
        )
    return target


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """``host`` is one of ``patterns`` (``push.example.com``, or ``*.example.com`` for any
    name under it)."""
    for pattern in patterns:
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


def is_network(text: str) -> bool:
    """A network in CIDR notation (``10.0.0.0/8``, ``fd00::/8``; a single address is a /32)."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True
