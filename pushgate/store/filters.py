"""Audience filters as SQL: the devices a filter (or a recipient list) reaches, paged and counted.

Every query is scoped to one app's active devices, so the smallest plan is an index range of
that app (``ix_devices_app_id_id``); a selective leaf gives the planner a narrower index
(docs/filters.md has the EXPLAIN output): provider ``ix_devices_app_provider``, locale
``ix_devices_app_locale``, app version ``ix_devices_app_version`` (the sortable key of
``domain/filters.py:version_key``), last seen ``ix_devices_app_seen``, created
``ix_devices_app_created``, user ``ix_devices_app_user``; tags and channels are ``id IN
(subquery)`` semi-joins on ``ix_device_tags_lookup`` (app, key, value) and the
``device_channels`` key (app, channel, device), which either database can drive the query from
or probe per device. ``meta`` is JSON text: its leaves are evaluated per row (``json_extract`` on
SQLite, ``->>`` on PostgreSQL) over the rows the other leaves leave, never through an index.

Pages are keyset pages on the device id, like a channel's. Counts run under a time bound
(:data:`COUNT_SECONDS`): PostgreSQL's ``statement_timeout``, SQLite's progress handler.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.filters import Group, Leaf, Node, Not
from pushgate.store.db import Database
from pushgate.store.devices import Device, device_from_row
from pushgate.store.registrations import token_hash
from pushgate.store.schema import device_channels, device_tags, devices

#: The longest a count may run before it is abandoned (:class:`CountTimeout`).
COUNT_SECONDS = 5.0


class CountTimeout(Exception):
    """The count ran past its time bound; nothing was counted."""


def _cmp(col: Any, op: str, value: Any) -> sa.ColumnElement[bool]:
    if op == "is":
        return col == value
    if op == "in":
        return col.in_(list(value))
    if op == "present":
        return sa.and_(col.is_not(None), col != "")
    if op == "absent":
        return sa.or_(col.is_(None), col == "")
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - parse checked it


def _tag_ids(app_id: str, key: str, values: Sequence[str] | None) -> sa.ColumnElement[bool]:
    """``devices.id IN`` the devices holding tag ``key`` (with one of ``values``, if given):
    a range of ``ix_device_tags_lookup``."""
    cond = [device_tags.c.app_id == app_id, device_tags.c.key == key]
    if values is not None:
        cond.append(
            device_tags.c.value.in_(list(values)) if len(values) > 1 else device_tags.c.value == values[0]
        )
    return devices.c.id.in_(sa.select(device_tags.c.device_id).where(*cond))


def _channel_ids(app_id: str, channels: Sequence[str], every: bool = False) -> sa.ColumnElement[bool]:
    """``devices.id IN`` the devices in any of ``channels`` (the ``device_channels`` key), or,
    ``every``, in all of them: one grouped subquery however many channels (an ``AND`` of 500
    subqueries passed SQLite's expression depth of 1000)."""
    names = sorted(set(channels))
    cond = device_channels.c.channel.in_(names) if len(names) > 1 else device_channels.c.channel == names[0]
    q = sa.select(device_channels.c.device_id).where(device_channels.c.app_id == app_id, cond)
    if every and len(names) > 1:
        q = q.group_by(device_channels.c.device_id).having(sa.func.count() == len(names))
    return devices.c.id.in_(q)


def _language(values: Sequence[str]) -> sa.ColumnElement[bool]:
    """The locale (lower case, ``_`` read as ``-``) is one of ``values`` or starts with one and
    ``-``: one ``IN`` per length of language code (at most 8), so a list of 500 codes is a
    handful of terms, not 1000 ``OR``s."""
    norm = sa.func.replace(sa.func.lower(devices.c.locale), "_", "-")
    langs = sorted(set(values))
    by_len: dict[int, list[str]] = {}
    for lang in langs:
        by_len.setdefault(len(lang), []).append(lang + "-")

    def one_of(expr: Any, xs: list[str]) -> sa.ColumnElement[bool]:
        return expr == xs[0] if len(xs) == 1 else expr.in_(xs)

    return sa.or_(
        one_of(norm, langs), *(one_of(sa.func.substr(norm, 1, n + 1), xs) for n, xs in sorted(by_len.items()))
    )


def _meta(dialect: str, key: str) -> Any:
    """The string value of meta ``key`` (NULL when absent): meta is a JSON object of strings."""
    if dialect == "postgresql":
        return sa.cast(devices.c.meta, postgresql.JSON)[key].astext
    return sa.func.json_extract(devices.c.meta, f'$."{key}"')


def _leaf(leaf: Leaf, app_id: str, dialect: str) -> sa.ColumnElement[bool]:
    f, op, v = leaf.field, leaf.op, leaf.value
    if f in ("provider", "platform", "locale", "timezone", "user"):
        return _cmp(devices.c[f], op, v)
    if f == "language":
        return _language([v] if op == "is" else list(v))
    if f == "channels":
        return _channel_ids(app_id, v, every=op == "all")
    if f == "tag":
        assert leaf.key is not None
        if op == "exists":
            found = _tag_ids(app_id, leaf.key, None)
            return found if v else sa.not_(found)
        if op == "not":
            return sa.not_(_tag_ids(app_id, leaf.key, [v]))
        return _tag_ids(app_id, leaf.key, [v] if op == "is" else v)
    if f == "meta":
        assert leaf.key is not None
        value = _meta(dialect, leaf.key)
        if op == "exists":
            return value.is_not(None) if v else value.is_(None)
        return value == v
    if f == "app_version":
        if op in ("present", "absent"):
            return _cmp(devices.c.app_version, op, None)
        col = devices.c.app_version_key
        return {"is": col == v, "gte": col >= v, "gt": col > v, "lte": col <= v, "lt": col < v}[op]
    if f in ("last_seen", "created"):
        col = devices.c.last_seen_at if f == "last_seen" else devices.c.created_at
        after, before = v
        cond = [
            *([col > after] if after is not None else []),
            *([col < before] if before is not None else []),
        ]
        return sa.and_(*cond)
    raise ValueError(f"unknown field {f!r}")  # pragma: no cover - parse checked it


#: Fields whose column may be NULL (no user, locale, time zone, meta key, parsable app version).
_NULLABLE = {"user", "locale", "language", "timezone", "meta", "app_version"}


def nullable(node: Node) -> bool:
    """Whether the SQL of ``node`` can be NULL rather than false: a comparison on an empty
    column. ``present``/``absent``/``exists`` test for NULL themselves; tags, channels and the
    other columns are never NULL."""
    if isinstance(node, Leaf):
        return node.field in _NULLABLE and node.op not in ("present", "absent", "exists")
    if isinstance(node, Not):
        return False
    return any(nullable(i) for i in node.items)


def condition(node: Node, app_id: str, dialect: str) -> sa.ColumnElement[bool]:
    """The WHERE clause over ``devices`` that a parsed filter means (without the app and status
    scope, which :func:`scope` adds).

    A comparison on an empty column is false in the language (docs/filters.md, "Empty
    fields"), but NULL in SQL, and ``NOT NULL`` is NULL, which drops the device: so ``not``
    of something that can be NULL is ``NOT COALESCE(x, false)``. Under ``all``/``any`` a NULL
    already acts as false (they are monotone), so only ``not`` needs it; a ``not`` that cannot be
    NULL (``{"not": {"user": "absent"}}``) keeps its plain form, and its plan."""
    if isinstance(node, Leaf):
        return _leaf(node, app_id, dialect)
    if isinstance(node, Not):
        inner = condition(node.item, app_id, dialect)
        return sa.not_(
            sa.func.coalesce(inner, sa.false(), type_=sa.Boolean) if nullable(node.item) else inner
        )
    parts = [condition(i, app_id, dialect) for i in node.items]
    return sa.and_(*parts) if node.op == "all" else sa.or_(*parts)


def scope(app_id: str, seen_after: float | None = None) -> list[sa.ColumnElement[bool]]:
    """One app's active devices (seen since ``seen_after``, when given: stale devices are
    reached through no recipient)."""
    cond = [devices.c.app_id == app_id, devices.c.status == "active"]
    if seen_after is not None:
        cond.append(devices.c.last_seen_at >= seen_after)
    return cond


def recipient_condition(
    entry: dict[str, Any], app_id: str, dialect: str, parsed: Node | None
) -> sa.ColumnElement[bool]:
    """The devices one stored recipient entry (``api/publish_batch.py:stored_recipients``)
    reaches, as a WHERE clause; ``parsed`` is the parsed filter of a ``filter`` entry. A native
    target and an unregistered raw token reach no device record (nothing to count)."""
    kind = entry["type"]
    if kind == "device":
        return devices.c.id == entry["device_id"]
    if kind == "user":
        return devices.c.user == entry["user"]
    if kind == "channel":
        return _channel_ids(app_id, [entry["channel"]])
    if kind == "token":
        return sa.and_(
            devices.c.provider == entry["provider"],
            devices.c.token_hash == token_hash(entry["provider"], entry["token_key"]),
        )
    if kind == "filter":
        assert parsed is not None
        return condition(parsed, app_id, dialect)
    return sa.false()


def recipients_condition(
    entries: Sequence[dict[str, Any]], app_id: str, dialect: str, parsed: Sequence[Node | None]
) -> sa.ColumnElement[bool]:
    """The devices any of ``entries`` reaches (``parsed[i]``: the parsed filter of entry ``i``),
    as one WHERE clause of bounded size: device ids, users, channels and tokens (per provider)
    each become one ``IN`` list, so a list of 1000 recipients is a few terms, not an ``OR``
    1000 deep (past SQLite's expression depth of 1000). The filters are ``OR``-ed: the
    request's budget (``domain/filters.py:MAX_REQUEST_NODES``) keeps that a few hundred terms
    deep at most, and their bind parameters (about two per list value and four per condition)
    far below PostgreSQL's 32767."""
    ids: list[str] = []
    users: list[str] = []
    channels: list[str] = []
    tokens: dict[str, list[str]] = {}
    terms: list[sa.ColumnElement[bool]] = []
    for entry, node in zip(entries, parsed, strict=True):
        kind = entry["type"]
        if kind == "device":
            ids.append(entry["device_id"])
        elif kind == "user":
            users.append(entry["user"])
        elif kind == "channel":
            channels.append(entry["channel"])
        elif kind == "token":
            hashes = tokens.setdefault(entry["provider"], [])
            hashes.append(token_hash(entry["provider"], entry["token_key"]))
        elif kind == "filter":
            terms.append(recipient_condition(entry, app_id, dialect, node))
    if ids:
        terms.append(devices.c.id.in_(sorted(set(ids))))
    if users:
        terms.append(devices.c.user.in_(sorted(set(users))))
    if channels:
        terms.append(_channel_ids(app_id, channels))
    for provider, hashes in sorted(tokens.items()):
        terms.append(sa.and_(devices.c.provider == provider, devices.c.token_hash.in_(sorted(set(hashes)))))
    return sa.or_(*terms) if terms else sa.false()


def page_query(
    columns: Sequence[Any],
    app_id: str,
    where: sa.ColumnElement[bool],
    after: str | None,
    limit: int,
    seen_after: float | None = None,
    *,
    sort: bool = False,
) -> sa.Select[Any]:
    """A keyset page of the app's active devices ``where`` matches, after device id ``after``.

    ``sort``: hide the id from SQLite's index choice (``+id``), so that it takes the filter's
    narrow index and sorts the few rows, rather than walking the app's devices in id order (its
    choice without statistics, see :func:`narrow`)."""
    ident: Any = sa.literal_column("+devices.id", sa.String) if sort else devices.c.id
    cond = [*scope(app_id, seen_after), where]
    if after:
        cond.append(ident > after)
    return sa.select(*columns).where(*cond).order_by(ident).limit(limit)


#: Leaves whose equality narrows the devices to an index range of their own.
_NARROW = {"user": ("is", "in"), "locale": ("is", "in"), "app_version": ("is",)}


def narrow(node: Node) -> bool:
    """Whether the filter requires an equality on an indexed column (``user``, ``locale``,
    exact ``app_version``): then its matches are few, and a page is best read through that
    index and sorted. (Tags and channels are ``IN`` lists SQLite drives the query from anyway;
    PostgreSQL weighs both plans by its statistics.)"""
    if isinstance(node, Leaf):
        return node.op in _NARROW.get(node.field, ())
    if isinstance(node, Group) and node.op == "all":
        return any(narrow(i) for i in node.items)
    return False


def count_query(
    app_id: str, where: sa.ColumnElement[bool], seen_after: float | None = None
) -> sa.Select[int, int]:
    """``(n, users)``: the app's active devices ``where`` matches and their distinct users."""
    user = devices.c.user
    return sa.select(
        sa.func.count().label("n"),
        sa.func.count(sa.distinct(sa.case((user != "", user)))).label("users"),
    ).where(*scope(app_id, seen_after), where)


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _sorts(self, node: Node) -> bool:
        return self.db.dialect == "sqlite" and narrow(node)

    async def page_rows(
        self,
        columns: Sequence[Any],
        app_id: str,
        node: Node,
        after: str | None,
        limit: int,
        seen_after: float | None = None,
    ) -> list[Any]:
        """Up to ``limit`` rows (``columns``) of the app's active devices ``node`` matches, after
        device id ``after``, in id order: one page of a ``filter`` recipient's planning."""
        where = condition(node, app_id, self.db.dialect)
        q = page_query(columns, app_id, where, after, limit, seen_after, sort=self._sorts(node))
        async with self.db.read() as conn:
            return list((await conn.execute(q)).all())

    async def search(
        self, app_id: str, node: Node, *, cursor: str | None, limit: int
    ) -> tuple[list[Device], str | None]:
        """A page of the app's active devices ``node`` matches; the next cursor or None."""
        where = condition(node, app_id, self.db.dialect)
        q = page_query([devices], app_id, where, cursor, limit + 1, sort=self._sorts(node))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        devs = [device_from_row(r) for r in rows[:limit]]
        return devs, (devs[-1].id if len(rows) > limit else None)

    async def count(
        self, app_id: str, where: sa.ColumnElement[bool], seen_after: float | None = None
    ) -> tuple[int, int]:
        """``(devices, distinct users)`` of the app's active devices ``where`` matches, in at
        most :data:`COUNT_SECONDS` (else :class:`CountTimeout`)."""
        async with self.db.read() as conn:
            row = await _bounded(conn, self.db.dialect, count_query(app_id, where, seen_after))
        return int(row.n), int(row.users)


async def _bounded(conn: AsyncConnection, dialect: str, q: Any) -> Any:
    """The one row of ``q``, abandoned after :data:`COUNT_SECONDS`."""
    if dialect == "postgresql":
        await conn.execute(sa.text(f"SET LOCAL statement_timeout = {int(COUNT_SECONDS * 1000)}"))
        try:
            return (await conn.execute(q)).one()
        except sa.exc.DBAPIError as exc:
            if "statement timeout" in str(exc.orig):
                raise CountTimeout from None
            raise
    raw: Any = (await conn.get_raw_connection()).driver_connection
    deadline = time.monotonic() + COUNT_SECONDS
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10000)
    try:
        return (await conn.execute(q)).one()
    except sa.exc.OperationalError as exc:
        if isinstance(exc.orig, sqlite3.OperationalError) and "interrupted" in str(exc.orig):
            raise CountTimeout from None
        raise
    finally:
        raw.set_progress_handler(None, 0)


#: ``GET /v1/stats/devices``: last-seen buckets of active devices, (name, within seconds).
SEEN_BUCKETS = (("1d", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0))
#: Locales in a stats answer: the most common ones (a locale is whatever devices sent).
STATS_LOCALES = 100


async def device_stats(db: Database, app_id: str, now: float) -> dict[str, Any]:
    """Counts of one app's devices by status and provider, platform, locale (the
    :data:`STATS_LOCALES` most common) and, for active devices, last-seen bucket. Each is one
    grouped read of the app's index range (``ix_devices_app_*``)."""
    out: dict[str, Any] = {"by_status": {}}
    async with db.read() as conn:
        for name, col in (("provider", devices.c.provider), ("platform", devices.c.platform)):
            q = sa.select(col.label("k"), devices.c.status, sa.func.count().label("n"))
            rows = (
                await conn.execute(q.where(devices.c.app_id == app_id).group_by(col, devices.c.status))
            ).all()
            out[f"by_{name}"] = _nested(rows)
        locale = sa.func.coalesce(devices.c.locale, "")
        top = (
            sa.select(locale.label("k"), sa.func.count().label("total"))
            .where(devices.c.app_id == app_id)
            .group_by(locale)
            .order_by(sa.func.count().desc(), locale)
            .limit(STATS_LOCALES)
            .subquery()
        )
        q = (
            sa.select(locale.label("k"), devices.c.status, sa.func.count().label("n"))
            .where(devices.c.app_id == app_id, locale.in_(sa.select(top.c.k)))
            .group_by(locale, devices.c.status)
        )
        out["by_locale"] = _nested((await conn.execute(q)).all())
        bucket = sa.case(
            *((devices.c.last_seen_at >= now - seconds, name) for name, seconds in SEEN_BUCKETS),
            else_="older",
        )
        q = sa.select(bucket.label("k"), sa.func.count().label("n")).where(*scope(app_id)).group_by(bucket)
        seen = {r.k: int(r.n) for r in (await conn.execute(q)).all()}
    out["by_last_seen"] = {name: seen.get(name, 0) for name, _ in (*SEEN_BUCKETS, ("older", 0.0))}
    for by_status in out["by_provider"].values():
        for status, n in by_status.items():
            out["by_status"][status] = out["by_status"].get(status, 0) + n
    return out


def _nested(rows: Sequence[Any]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for r in rows:
        found.setdefault(r.k, {})[r.status] = int(r.n)
    return found
