"""An independent reading of the audience filter language (docs/filters.md), for the tests.

Written without the package's parser or SQL: the tests hold the SQL to this evaluation device by
device. A device is a dict with the fields of a registration (``provider``, ``platform``,
``user``, ``tags``, ``meta``, ``channels``, ``locale``, ``timezone``, ``app_version``) and
``created_at``/``last_seen_at`` as epoch seconds.

An empty field (``None``: no user, locale, time zone, meta key or parsable app version) makes
every comparison on it false, so ``not`` of that comparison is true (docs/filters.md, "Empty
fields"): plain two-valued logic, never SQL's NULL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def _ts(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _version(v: str | None) -> tuple[tuple[int, ...], int] | None:
    """A version as (numbers padded to four, 1 for a release / 0 for a pre-release), or None."""
    if v is None:
        return None
    core, _, pre = v.partition("-")
    parts = core.split(".")
    if not all(p.isdigit() for p in parts):
        return None
    nums = tuple(int(p) for p in parts)
    return nums + (0,) * (4 - len(nums)), 0 if pre else 1


def _keyed(f: dict[str, Any], d: dict[str, Any]) -> bool:
    """A tag or meta leaf."""
    if "meta" in f:
        have = (d.get("meta") or {}).get(f["meta"])
        return have == f["is"] if "is" in f else (have is not None) == f["exists"]
    have = d["tags"].get(f["tag"])
    if "is" in f:
        return have == f["is"]
    if "in" in f:
        return have in f["in"]
    if "not" in f:
        return have != f["not"]
    return (have is not None) == f["exists"]


def evaluate(f: dict[str, Any], d: dict[str, Any]) -> bool:
    """Does device ``d`` (a spec of :func:`population`) match filter ``f``? (docs/filters.md)"""
    if "all" in f:
        return all(evaluate(x, d) for x in f["all"])
    if "any" in f:
        return any(evaluate(x, d) for x in f["any"])
    if "tag" in f or "meta" in f:
        return _keyed(f, d)
    if "not" in f:
        return not evaluate(f["not"], d)
    ((field, arg),) = f.items()
    if field == "channels":
        ((op, names),) = arg.items()
        held = set(d.get("channels") or [])
        return bool(held & set(names)) if op == "any" else set(names) <= held
    if field == "app_version":
        if isinstance(arg, str):
            return (d["app_version"] is not None) == (arg == "present")
        ((op, v),) = arg.items()
        have, want = _version(d["app_version"]), _version(v)
        if have is None:
            return False
        return {
            "is": have == want,
            "gte": have >= want,  # type: ignore[operator]
            "gt": have > want,  # type: ignore[operator]
            "lte": have <= want,  # type: ignore[operator]
            "lt": have < want,  # type: ignore[operator]
        }[op]
    if field in ("last_seen", "created"):
        t = d["last_seen_at" if field == "last_seen" else "created_at"]
        return ("after" not in arg or t > _ts(arg["after"])) and (
            "before" not in arg or t < _ts(arg["before"])
        )
    value = d.get(field if field != "language" else "locale")
    if isinstance(arg, str):
        return bool(value) == (arg == "present")
    ((op, want),) = arg.items()
    wants = [want] if op == "is" else want
    if field == "language":
        # ``_`` reads as ``-`` (``pt_BR`` is ``pt-BR``), as template locale choice reads it.
        low = (value or "").lower().replace("_", "-")
        return any(low == w.lower() or low.startswith(w.lower() + "-") for w in wants)
    return value in wants
