"""The audience filter language (docs/filters.md): parsed and checked, without any database.

A filter is JSON an app sends as a recipient (``{"type": "filter", "filter": ...}``), to
``POST /v1/audience/count`` and to device search. It is validated by hand rather than by a
msgspec union: every error names the exact place (``all[2].app_version.gte``) and says how to
fix it, and the depth and size limits are checked while walking, before anything large is
built. The parsed tree (:class:`Group`, :class:`Not`, :class:`Leaf`) is compiled to SQL by
``store/filters.py``; nothing here evaluates a filter against a device (the tests carry their
own independent evaluator, so the SQL is checked against a second reading of this grammar).

Shapes (one key per object, except tag/meta leaves which name their key and one operator)::

    {"all": [F, ...]}  {"any": [F, ...]}  {"not": F}
    {"provider": {"is": "fcm"}}            {"provider": {"in": ["fcm", "apns"]}}
    {"platform": {"is" | "in": ...}}       {"timezone": {"is" | "in": ...}} or "present" / "absent"
    {"locale": {"is" | "in": ...}}         (exact), or "present" / "absent"
    {"language": {"is" | "in": ...}}       (locale equal to it, or starting with it and "-" or "_")
    {"user": "present"} {"user": "absent"} {"user": {"is" | "in": ...}}
    {"channels": {"any": [...]}}           {"channels": {"all": [...]}}
    {"tag": "plan", "is": "pro"}  {"tag": "plan", "in": [...]}  {"tag": "plan", "exists": true}
    {"tag": "plan", "not": "free"}         (no tag plan=free: a device without the tag matches)
    {"meta": "name", "is": "x"}   {"meta": "name", "exists": true}
    {"app_version": {"gte" | "gt" | "lte" | "lt" | "is": "2.10.0"}} or "present" / "absent"
    {"last_seen": {"before": T, "after": T}}   {"created": {"before": T, "after": T}}  (RFC 3339)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pushgate.domain.timefmt import parse_rfc3339

#: Nesting of ``all``/``any``/``not`` (a leaf inside ``{"all": [...]}`` is at depth 2).
MAX_DEPTH = 6
#: Objects in one filter (combinators and leaves).
MAX_NODES = 100
#: Values in one ``in``/``any``/``all`` list.
MAX_LIST = 500
#: Values in all the lists of one filter together (each is a bound parameter).
MAX_VALUES = 2000

#: Conditions in all the filters of one request together (a publish's or a count's recipients).
MAX_REQUEST_NODES = 200
#: List values in all the filters of one request together.
MAX_REQUEST_VALUES = 4000

#: Fields compared with ``is``/``in`` (and ``present``/``absent`` where the column may be empty).
_SCALARS = {
    "provider": False,
    "platform": False,
    "locale": True,
    "language": False,
    "timezone": True,
    "user": True,
}
_VERSION_OPS = ("is", "gte", "gt", "lte", "lt")
_LANGUAGE = re.compile(r"^[A-Za-z]{1,8}$")
#: Tag and meta names (meta keys are looked up by a JSON path on SQLite: no quote or backslash).
_KEY_NAME = re.compile(r'^[^"\\]{1,200}$')
_VERSION = re.compile(
    r"^v?(\d{1,8}(?:\.\d{1,8}){0,3})(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]*)?$"
)
#: Numeric parts of a version key (missing ones are 0: ``2.10`` is ``2.10.0.0``).
_PARTS = 4
#: The longest key (the ``devices.app_version_key`` column).
MAX_KEY = 120


class FilterError(Exception):
    """A filter that cannot be used: ``path`` locates it (``all[1].tag``), ``message`` says why."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Leaf:
    """One test on a device. ``field``: provider, platform, locale, language, timezone, user,
    channels, tag, meta, app_version, last_seen, created. ``op``: is, in, present, absent, any,
    all, exists, not, gte, gt, lte, lt, range. ``key``: the tag or meta name. ``value``: a
    string, a tuple of strings, a bool (exists), a version key, or ``(after, before)`` epochs."""

    field: str
    op: str
    value: Any = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """``all`` (every item) or ``any`` (at least one item)."""

    op: str
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Leaf | Group | Not


def version_key(version: str) -> str | None:
    """A string that sorts like the version does, or None for something that is not a version.

    Digits only, so every collation sorts it as plain bytes (a PostgreSQL database in
    ``en_US`` ignores punctuation when comparing): four numeric parts of 8 digits (``2.10`` is
    ``2.10.0.0``, so ``2.10.0 > 2.9.9``), then ``9`` for a release or ``5`` and the pre-release
    identifiers (SemVer's order: ``2.0.0-rc.1 < 2.0.0``; numeric identifiers ``1`` + 8 digits
    below alphanumeric ones ``2`` + two digits per character, ``00`` ending each; ``0`` ends the
    list, so fewer identifiers sort first). Build metadata (``+...``) is ignored; a leading
    ``v`` is allowed.
    """
    m = _VERSION.match(version.strip())
    if m is None:
        return None
    nums = [int(p) for p in m.group(1).split(".")]
    key = "".join(f"{n:08d}" for n in nums + [0] * (_PARTS - len(nums)))
    if m.group(2) is None:
        key += "9"
    else:
        key += "5"
        for ident in m.group(2).split("."):
            if ident.isdigit():
                if len(ident) > 8:
                    return None
                key += f"1{int(ident):08d}"
            else:
                key += "2" + "".join(f"{ord(c) - 32:02d}" for c in ident) + "00"
        key += "0"
    return key if len(key) <= MAX_KEY else None


@dataclass
class RequestBudget:
    """What all the filters of one request have used so far: pass one to every :func:`parse` of
    a recipient list, so that a thousand filters of the per-filter maximum are refused
    (:data:`MAX_REQUEST_NODES`, :data:`MAX_REQUEST_VALUES`) rather than compiled for a minute
    and sent past PostgreSQL's 32767 bind parameters."""

    nodes: int = 0
    values: int = 0


@dataclass
class _Budget:
    request: RequestBudget
    nodes: int = 0
    values: int = 0

    def node(self, path: str) -> None:
        self.nodes += 1
        self.request.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(path, f"too large: at most {MAX_NODES} conditions in one filter")
        if self.request.nodes > MAX_REQUEST_NODES:
            raise FilterError(
                path, f"too large: at most {MAX_REQUEST_NODES} conditions in all the filters of one request"
            )

    def add_values(self, n: int, where: str) -> None:
        self.values += n
        self.request.values += n
        if self.values > MAX_VALUES:
            raise FilterError(where, f"too large: at most {MAX_VALUES} list values in one filter")
        if self.request.values > MAX_REQUEST_VALUES:
            raise FilterError(
                where,
                f"too large: at most {MAX_REQUEST_VALUES} list values in all the filters of one request",
            )


def parse(raw: Any, path: str = "", request: RequestBudget | None = None) -> Node:
    """The checked tree of filter ``raw`` (decoded JSON); raises :class:`FilterError`.

    ``path`` prefixes every error's path (``recipients[0].filter``). ``request``: the budget
    shared by the other filters of the same request (a recipient list); without it the filter
    is alone."""
    return _node(raw, path, 1, _Budget(request if request is not None else RequestBudget()))


def _at(path: str, part: str) -> str:
    if part.startswith("["):
        return path + part
    return f"{path}.{part}" if path else part


def _node(raw: Any, path: str, depth: int, budget: _Budget) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(path, f"nested too deep: at most {MAX_DEPTH} levels of all/any/not")
    budget.node(path)
    if not isinstance(raw, dict) or not raw:
        raise FilterError(path, 'must be an object such as {"provider": {"is": "fcm"}} (see docs/filters.md)')
    if "tag" in raw or "meta" in raw:
        return _keyed(raw, path, budget)
    if len(raw) != 1:
        raise FilterError(path, f"one condition per object, got {sorted(raw)}; combine them with all/any")
    ((name, arg),) = raw.items()
    where = _at(path, name)
    if name in ("all", "any"):
        if not isinstance(arg, list) or not arg:
            raise FilterError(where, "must be a non-empty list of filters")
        return Group(
            name, tuple(_node(x, _at(where, f"[{i}]"), depth + 1, budget) for i, x in enumerate(arg))
        )
    if name == "not":
        return Not(_node(arg, where, depth + 1, budget))
    if name in _SCALARS:
        return _scalar(name, arg, where, budget)
    if name == "channels":
        op, value = _one_op(arg, where, ("any", "all"))
        return Leaf("channels", op, _strings(value, _at(where, op), budget))
    if name == "app_version":
        return _version(arg, where)
    if name in ("last_seen", "created"):
        return _times(name, arg, where)
    raise FilterError(
        where,
        "unknown field; use all, any, not, provider, platform, user, channels, tag, meta, locale, "
        "language, timezone, app_version, last_seen or created",
    )


def _one_op(arg: Any, where: str, ops: tuple[str, ...]) -> tuple[str, Any]:
    if not isinstance(arg, dict) or len(arg) != 1:
        raise FilterError(where, f"must be an object with one operator: {', '.join(ops)}")
    ((op, value),) = arg.items()
    if op not in ops:
        raise FilterError(_at(where, op), f"unknown operator; use {', '.join(ops)}")
    return op, value


def _string(value: Any, where: str, max_length: int = 500) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise FilterError(where, f"must be a non-empty string of at most {max_length} characters")
    return value


def _strings(value: Any, where: str, budget: _Budget) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise FilterError(where, "must be a non-empty list of strings")
    if len(value) > MAX_LIST:
        raise FilterError(where, f"too long: at most {MAX_LIST} values in one list")
    budget.add_values(len(value), where)
    return tuple(_string(v, _at(where, f"[{i}]")) for i, v in enumerate(value))


def _scalar(name: str, arg: Any, where: str, budget: _Budget) -> Leaf:
    if isinstance(arg, str) and _SCALARS[name]:
        if arg not in ("present", "absent"):
            raise FilterError(where, 'use "present", "absent" or an object with "is" or "in"')
        return Leaf(name, arg)
    op, value = _one_op(arg, where, ("is", "in"))
    values = (_string(value, _at(where, op)),) if op == "is" else _strings(value, _at(where, op), budget)
    if name == "language":
        for v in values:
            if not _LANGUAGE.match(v):
                raise FilterError(_at(where, op), f"{v!r} is not a language code (letters only, e.g. pt)")
        values = tuple(v.lower() for v in values)
    return Leaf(name, op, values[0] if op == "is" else values)


def _keyed(raw: dict[str, Any], path: str, budget: _Budget) -> Leaf:
    """``{"tag": k, <op>: v}`` or ``{"meta": k, <op>: v}``."""
    field = "tag" if "tag" in raw else "meta"
    ops = ("is", "in", "exists", "not") if field == "tag" else ("is", "exists")
    key = raw[field]
    if not isinstance(key, str) or not _KEY_NAME.match(key):
        raise FilterError(_at(path, field), "must be a name of 1-200 characters (no quotes or backslashes)")
    rest = {k: v for k, v in raw.items() if k != field}
    if len(rest) != 1:
        raise FilterError(path, f"give the {field} and exactly one operator: {', '.join(ops)}")
    ((op, value),) = rest.items()
    where = _at(path, op)
    if op not in ops:
        raise FilterError(where, f"unknown operator for {field}; use {', '.join(ops)}")
    if op == "exists":
        if not isinstance(value, bool):
            raise FilterError(where, "must be true or false")
        return Leaf(field, op, value, key)
    if op == "in":
        return Leaf(field, op, _strings(value, where, budget), key)
    return Leaf(field, op, _string(value, where), key)


def _version(arg: Any, where: str) -> Leaf:
    if isinstance(arg, str):
        if arg not in ("present", "absent"):
            raise FilterError(where, 'use "present", "absent" or an object such as {"gte": "2.10.0"}')
        return Leaf("app_version", arg)
    op, value = _one_op(arg, where, _VERSION_OPS)
    key = version_key(value) if isinstance(value, str) else None
    if key is None:
        raise FilterError(
            _at(where, op), f"{value!r} is not a version: use numbers with dots, e.g. 2.10.0 or 3.0.0-beta.2"
        )
    return Leaf("app_version", op, key)


def _times(name: str, arg: Any, where: str) -> Leaf:
    if not isinstance(arg, dict) or not arg or set(arg) - {"before", "after"}:
        raise FilterError(where, 'must be an object with "before" and/or "after" (RFC 3339 times)')
    bounds: dict[str, float] = {}
    for side, value in arg.items():
        try:
            bounds[side] = parse_rfc3339(_string(value, _at(where, side), 64))
        except ValueError as exc:
            raise FilterError(_at(where, side), f"not an RFC 3339 time: {exc}") from None
    return Leaf(name, "range", (bounds.get("after"), bounds.get("before")))


def fields(node: Node) -> set[str]:
    """The fields a filter tests (for the docs' index table and for callers that need to know
    whether it reads ``meta``)."""
    if isinstance(node, Leaf):
        return {node.field}
    if isinstance(node, Not):
        return fields(node.item)
    return set().union(*(fields(i) for i in node.items))
