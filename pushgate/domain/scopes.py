"""What an API key may do: its scopes, and which scope each kind of request needs.

A key carries one or more of four scopes. ``admin`` includes the other three, so a key from
before scopes existed (it has all of them) and an ``admin`` key behave the same. The rule for
each route lives here, in one table, so a route added later gets a scope by the same rule and
an unknown kind of write falls to ``admin`` (closed, not open).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Scope(StrEnum):
    ADMIN = "admin"
    PUBLISH = "publish"
    REGISTER = "register"
    READ = "read"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)


class UnknownScope(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown scope {name!r}: use one or more of {', '.join(sorted(ALL_SCOPES))}")


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """The scopes named (commas or spaces between them); raises :class:`UnknownScope`."""
    out: set[Scope] = set()
    for item in names:
        for name in item.replace(",", " ").split():
            try:
                out.add(Scope(name.strip().lower()))
            except ValueError:
                raise UnknownScope(name) from None
    return frozenset(out)


def format_scopes(scopes: Iterable[Scope]) -> str:
    """The stored (and printed) form: sorted, space-separated."""
    return " ".join(sorted(str(s) for s in scopes))


def allows(held: frozenset[Scope], needed: Scope) -> bool:
    return needed in held or Scope.ADMIN in held


#: Paths (under ``/v1``) whose every method is an administrator's: they change who may do what.
_ADMIN_PATHS = ("/v1/compat", "/v1/credentials", "/v1/keys", "/v1/realtime/secret")
#: Writes that send (or stop sending) notifications.
_PUBLISH_PATHS = ("/v1/publish", "/v1/publishes/", "/v1/dead-letters/replay", "/v1/realtime/tokens")
#: Writes that change the audience: devices, their channels, users' channels, and the client
#: tokens that let an app's clients register their own devices (and device tokens, under
#: ``/v1/devices/{id}/token``), and the receipts devices report (docs/receipts.md). Marking a
#: channel private is not among them: it falls to admin.
_REGISTER_PATHS = ("/v1/devices", "/v1/users/", "/v1/client-tokens", "/v1/receipts")
_READ_METHODS = frozenset({"GET", "HEAD"})
#: Questions asked with a body (a filter or a recipient list too long for a URL): reads.
_READ_POSTS = ("/v1/devices/search", "/v1/audience/count")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def required_scope(method: str, path: str) -> Scope:
    """The scope a request needs: admin routes first (even their reads show credentials or keys),
    then any read, then publish and register writes; any other write needs ``admin``."""
    if _under(path, _ADMIN_PATHS):
        return Scope.ADMIN
    if method.upper() in _READ_METHODS or (method.upper() == "POST" and path in _READ_POSTS):
        return Scope.READ
    if _under(path, _PUBLISH_PATHS):
        return Scope.PUBLISH
    if _under(path, _REGISTER_PATHS):
        return Scope.REGISTER
    return Scope.ADMIN
