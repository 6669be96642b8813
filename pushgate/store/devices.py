"""The device registry: devices, their tags and channels, and user → channel bindings.

User bindings (``user_channels``) are applied to devices whenever a device gains a user, is
registered for one, or the binding changes, so a publish to a channel never has to join
through users at send time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.ids import new_id
from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.schema import device_channels, device_tags, devices, user_channels


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
_T = TypeVar("_T")


def token_hash(provider: str, token_key: str) -> str:
    return hashlib.sha256(f"{provider}\x00{token_key}".encode()).hexdigest()


@dataclass(slots=True)
class Device:
    id: str
    provider: str
    token: str
    platform: str
    user: str | None
    locale: str | None
    timezone: str | None
    environment: str | None
    status: str
    invalid_reason: str | None
    invalidated_at: float | None
    created_at: float
    updated_at: float
    last_seen_at: float
    meta: dict[str, str] | None = None
    tags: dict[str, str] | None = None
    channels: list[str] | None = None


@dataclass(slots=True)
class DeviceFilter:
    """Selects devices for bulk update/remove and listing. Different fields narrow (AND);
    the values inside one field widen (OR)."""

    ids: list[str] | None = None
    users: list[str] | None = None
    provider_token_hashes: list[str] | None = None
    providers: list[str] | None = None
    platforms: list[str] | None = None
    channels: list[str] | None = None
    status: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.ids or self.users or self.provider_token_hashes)


class DeviceConflict(Exception):
    """The token is already registered to another device id."""


class DeviceNotFound(Exception):
    pass


ChannelOp = Literal["add", "remove", "set"]

#: Rows per multi-row statement: 500 devices x 17 columns stays under SQLite's and asyncpg's
#: limit of 32,766 bound parameters per statement.
_BATCH_ROWS = 500

_ALWAYS_SET = (
    "provider",
    "token",
    "platform",
    "status",
    "invalid_reason",
    "invalidated_at",
    "updated_at",
    "last_seen_at",
)
_OPTIONAL = ("user", "locale", "timezone", "environment", "meta")


@dataclass(slots=True)
class Registration:
    """One device registration, as ``POST /v1/devices`` gives it; ``UNSET`` fields keep their value."""

    provider: str
    token: str
    token_key: str
    platform: str
    device_id: str | None = None
    user: str | None = UNSET
    meta: dict[str, str] | None = UNSET
    tags: dict[str, str] | None = UNSET
    channels: list[str] | None = UNSET
    locale: str | None = UNSET
    timezone: str | None = UNSET
    environment: str | None = UNSET

    def given(self) -> tuple[str, ...]:
        """The optional ``devices`` columns this registration sets."""
        return tuple(name for name in _OPTIONAL if getattr(self, name) is not UNSET)

    def values(self, th: str, now: float) -> dict[str, Any]:
        """The ``devices`` columns this registration writes (``id``/``app_id``/``created_at`` aside)."""
        values: dict[str, Any] = {
            "provider": self.provider,
            "token": self.token,
            "token_hash": th,
            "platform": self.platform,
            "status": "active",
            "invalid_reason": None,
            "invalidated_at": None,
            "updated_at": now,
            "last_seen_at": now,
        }
        for key in ("user", "locale", "timezone", "environment"):
            val = getattr(self, key)
            if val is not UNSET:
                values[key] = val
        if self.meta is not UNSET:
            values["meta"] = json.dumps(self.meta) if self.meta else None
        return values


class DeviceBatchError(Exception):
    """Registration ``index`` of a batch failed with ``error`` (DeviceNotFound or DeviceConflict)."""

    def __init__(self, index: int, error: DeviceNotFound | DeviceConflict) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


class DeviceBatchDuplicate(Exception):
    """Registrations of one batch name the same device: ``pairs`` of (index, index of the first)."""

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _check_duplicates(regs: Sequence[Registration], hashes: list[str]) -> None:
    seen: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for i, (reg, th) in enumerate(zip(regs, hashes, strict=True)):
        first = seen.setdefault(th, i)
        if first != i:
            pairs.append((i, first))
        if reg.device_id is not None:
            first = seen.setdefault("id:" + reg.device_id, i)
            if first != i:
                pairs.append((i, first))
    if pairs:
        raise DeviceBatchDuplicate(pairs)


def _upsert_devices(dialect: str, rows: list[dict[str, Any]], given: tuple[str, ...]) -> Any:
    """Multi-row ``INSERT … ON CONFLICT (app_id, provider, token_hash) DO UPDATE … RETURNING``.

    An existing device keeps its id and ``created_at`` and gets every column the registration
    sets (the ``given`` optional ones included); ``RETURNING`` maps token hashes to device ids.
    """
    insert = postgresql.insert(devices) if dialect == "postgresql" else sqlite.insert(devices)
    stmt = insert.values(rows)
    updated = (*_ALWAYS_SET, *given)
    return stmt.on_conflict_do_update(
        index_elements=["app_id", "provider", "token_hash"],
        set_={name: getattr(stmt.excluded, name) for name in updated},
    ).returning(devices.c.id, devices.c.token_hash, devices.c.created_at, devices.c.user)


def _got(item: tuple[str, bool] | None) -> tuple[str, bool]:
    assert item is not None
    return item


def _id(item: tuple[str, bool] | None) -> str:
    return _got(item)[0]


def _device(row: Any) -> Device:
    return Device(
        id=row.id,
        provider=row.provider,
        token=row.token,
        platform=row.platform,
        user=row.user,
        locale=row.locale,
        timezone=row.timezone,
        environment=row.environment,
        status=row.status,
        invalid_reason=row.invalid_reason,
        invalidated_at=row.invalidated_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_seen_at=row.last_seen_at,
    )


class DeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- single device -------------------------------------------------------------------

    async def register(
        self,
        app_id: str,
        *,
        provider: str,
        token: str,
        token_key: str,
        platform: str,
        device_id: str | None = None,
        user: str | None = UNSET,
        meta: dict[str, str] | None = UNSET,
        tags: dict[str, str] | None = UNSET,
        channels: list[str] | None = UNSET,
        locale: str | None = UNSET,
        timezone: str | None = UNSET,
        environment: str | None = UNSET,
    ) -> tuple[Device, bool]:
        """Insert or update by (app, provider, token); returns the device and whether it is new.

        Registering a token again reactivates it: the app has evidence it works again.
        """
        reg = Registration(
            provider=provider,
            token=token,
            token_key=token_key,
            platform=platform,
            device_id=device_id,
            user=user,
            meta=meta,
            tags=tags,
            channels=channels,
            locale=locale,
            timezone=timezone,
            environment=environment,
        )
        async with self.db.write() as conn:
            dev_id, created = await self._register_one(conn, app_id, reg, time.time())
            device = await self._load(conn, app_id, dev_id, full=True)
        assert device is not None
        return device, created

    async def _register_one(
        self, conn: AsyncConnection, app_id: str, reg: Registration, now: float
    ) -> tuple[str, bool]:
        th = token_hash(reg.provider, reg.token_key)
        existing = (
            await conn.execute(
                sa.select(devices).where(
                    devices.c.app_id == app_id, devices.c.provider == reg.provider, devices.c.token_hash == th
                )
            )
        ).first()
        if reg.device_id is not None:
            target = (
                await conn.execute(
                    sa.select(devices).where(devices.c.app_id == app_id, devices.c.id == reg.device_id)
                )
            ).first()
            if target is None:
                raise DeviceNotFound(reg.device_id)
            if existing is not None and existing.id != reg.device_id:
                raise DeviceConflict(existing.id)
            existing = target
        values = reg.values(th, now)
        created = existing is None
        if created:
            dev_id = new_id("dev")
            values.setdefault("user", None)
            await conn.execute(sa.insert(devices).values(id=dev_id, app_id=app_id, created_at=now, **values))
            old_user = None
        else:
            assert existing is not None
            dev_id = existing.id
            old_user = existing.user
            await conn.execute(sa.update(devices).where(devices.c.id == dev_id).values(**values))
        if reg.tags is not UNSET:
            await self._set_tags(conn, app_id, [dev_id], reg.tags or {})
        if reg.channels is not UNSET:
            await self._channels(conn, app_id, [dev_id], "set", reg.channels or [])
        new_user = values.get("user", old_user)
        if created or new_user != old_user or reg.channels is not UNSET:
            await self._rebind_user(conn, app_id, [dev_id], old_user if not created else None, new_user)
        return dev_id, created

    # ---- many devices at once -------------------------------------------------------------

    async def register_many(self, app_id: str, regs: Sequence[Registration]) -> list[tuple[str, bool]]:
        """Register or update every device of ``regs`` in one transaction, all or nothing.

        Answers ``(device id, created)`` per registration, in order. Each registration means
        exactly what :meth:`register` means for it. Those without ``device_id`` are written with
        multi-row ``INSERT … ON CONFLICT (app, provider, token) DO UPDATE`` statements, one per
        group of registrations that set the same optional fields (a field left out keeps its
        stored value, so it must not appear in that row's ``SET``). Those with ``device_id``
        (token rotation) go one by one. Two registrations of the same token, or of the same
        ``device_id``, raise :class:`DeviceBatchDuplicate`; a missing or conflicting
        ``device_id`` raises :class:`DeviceBatchError` naming its index; nothing is written then.
        """
        now = time.time()
        hashes = [token_hash(r.provider, r.token_key) for r in regs]
        _check_duplicates(regs, hashes)
        result: list[tuple[str, bool] | None] = [None] * len(regs)
        async with self.db.write() as conn:
            for i, reg in enumerate(regs):
                if reg.device_id is not None:
                    try:
                        result[i] = await self._register_one(conn, app_id, reg, now)
                    except (DeviceNotFound, DeviceConflict) as exc:
                        raise DeviceBatchError(i, exc) from None
            plain = [i for i, reg in enumerate(regs) if reg.device_id is None]
            # Who the device belonged to before matters only when the registration sets a user
            # (to move the user's channel bindings); otherwise RETURNING tells all we need.
            old_users: dict[str, str | None] = {}  # token hash -> user before
            by_provider: dict[str, list[str]] = {}
            for i in plain:
                if regs[i].user is not UNSET:
                    by_provider.setdefault(regs[i].provider, []).append(hashes[i])
            for provider, provider_hashes in by_provider.items():
                for some in _chunks(provider_hashes, _BATCH_ROWS):
                    rows = await conn.execute(
                        sa.select(devices.c.user, devices.c.token_hash).where(
                            devices.c.app_id == app_id,
                            devices.c.provider == provider,
                            devices.c.token_hash.in_(some),
                        )
                    )
                    old_users.update({r.token_hash: r.user for r in rows})
            groups: dict[tuple[str, ...], list[int]] = {}
            for i in plain:
                groups.setdefault(regs[i].given(), []).append(i)
            rebind: dict[tuple[str | None, str | None], list[str]] = {}
            for given, members in groups.items():
                for chunk in _chunks(members, _BATCH_ROWS):
                    rows_in = [
                        {
                            "id": new_id("dev"),
                            "app_id": app_id,
                            "created_at": now,
                            **regs[i].values(hashes[i], now),
                        }
                        for i in chunk
                    ]
                    stmt = _upsert_devices(self.db.dialect, rows_in, given)
                    # An updated row keeps its created_at, so `created_at == now` means inserted.
                    got = {r.token_hash: r for r in await conn.execute(stmt)}
                    for i in chunk:
                        row = got[hashes[i]]
                        created = row.created_at == now
                        result[i] = (row.id, created)
                        # User bindings, as register() applies them, grouped by (old, new) user.
                        if created:
                            old_user = None
                        elif regs[i].user is not UNSET:
                            old_user = old_users.get(hashes[i])
                        else:
                            old_user = row.user
                        if created or row.user != old_user or regs[i].channels is not UNSET:
                            rebind.setdefault((old_user, row.user), []).append(row.id)
            # Tags and channels: replaced for the registrations that give them.
            await self._set_tags_each(
                conn, app_id, {_id(result[i]): regs[i].tags or {} for i in plain if regs[i].tags is not UNSET}
            )
            await self._set_channels_each(
                conn,
                app_id,
                {_id(result[i]): regs[i].channels or [] for i in plain if regs[i].channels is not UNSET},
            )
            for (old_user, new_user), dev_ids in rebind.items():
                await self._rebind_user(conn, app_id, dev_ids, old_user, new_user)
        return [_got(r) for r in result]

    async def get(self, app_id: str, device_id: str) -> Device | None:
        async with self.db.read() as conn:
            return await self._load(conn, app_id, device_id, full=True)

    async def _load(self, conn: AsyncConnection, app_id: str, device_id: str, *, full: bool) -> Device | None:
        row = (
            await conn.execute(
                sa.select(devices).where(devices.c.app_id == app_id, devices.c.id == device_id)
            )
        ).first()
        if row is None:
            return None
        dev = _device(row)
        if full:
            await self._attach(conn, [dev], {"meta": row.meta}, ("meta", "tags", "channels"))
        return dev

    async def _attach(
        self, conn: AsyncConnection, devs: list[Device], metas: dict[str, Any] | None, include: Iterable[str]
    ) -> None:
        include = set(include)
        ids = [d.id for d in devs]
        by_id = {d.id: d for d in devs}
        if "meta" in include:
            if metas is not None and len(devs) == 1:
                devs[0].meta = json.loads(metas["meta"]) if metas["meta"] else {}
            else:
                rows = (
                    await conn.execute(sa.select(devices.c.id, devices.c.meta).where(devices.c.id.in_(ids)))
                ).all()
                for r in rows:
                    by_id[r.id].meta = json.loads(r.meta) if r.meta else {}
        if "tags" in include:
            for d in devs:
                d.tags = {}
            tag_rows = (
                await conn.execute(
                    sa.select(device_tags.c.device_id, device_tags.c.key, device_tags.c.value).where(
                        device_tags.c.device_id.in_(ids)
                    )
                )
            ).all()
            for t in tag_rows:
                by_id[t.device_id].tags[t.key] = t.value  # type: ignore[index]
        if "channels" in include:
            for d in devs:
                d.channels = []
            channel_rows = (
                await conn.execute(
                    sa.select(device_channels.c.device_id, device_channels.c.channel)
                    .where(device_channels.c.device_id.in_(ids))
                    .order_by(device_channels.c.channel)
                )
            ).all()
            for c in channel_rows:
                by_id[c.device_id].channels.append(c.channel)  # type: ignore[union-attr]

    # ---- listing and bulk ---------------------------------------------------------------

    def _where(self, app_id: str, f: DeviceFilter) -> list[Any]:
        cond: list[Any] = [devices.c.app_id == app_id]
        if f.ids:
            cond.append(devices.c.id.in_(f.ids))
        if f.users:
            cond.append(devices.c.user.in_(f.users))
        if f.provider_token_hashes:
            cond.append(devices.c.token_hash.in_(f.provider_token_hashes))
        if f.providers:
            cond.append(devices.c.provider.in_(f.providers))
        if f.platforms:
            cond.append(devices.c.platform.in_(f.platforms))
        if f.status:
            cond.append(devices.c.status == f.status)
        if f.channels:
            cond.append(
                devices.c.id.in_(
                    sa.select(device_channels.c.device_id).where(
                        device_channels.c.app_id == app_id, device_channels.c.channel.in_(f.channels)
                    )
                )
            )
        for key, value in f.tags.items():
            cond.append(
                devices.c.id.in_(
                    sa.select(device_tags.c.device_id).where(
                        device_tags.c.app_id == app_id, device_tags.c.key == key, device_tags.c.value == value
                    )
                )
            )
        return cond

    async def list_devices(
        self, app_id: str, f: DeviceFilter, *, cursor: str | None, limit: int, include: Iterable[str] = ()
    ) -> tuple[list[Device], str | None]:
        cond = self._where(app_id, f)
        if cursor:
            cond.append(devices.c.id > cursor)
        q = sa.select(devices).where(*cond).order_by(devices.c.id).limit(limit + 1)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
            more = len(rows) > limit
            devs = [_device(r) for r in rows[:limit]]
            if devs and include:
                await self._attach(conn, devs, None, include)
        return devs, (devs[-1].id if more else None)

    async def _ids(self, conn: AsyncConnection, app_id: str, f: DeviceFilter) -> list[tuple[str, str | None]]:
        rows = (
            await conn.execute(sa.select(devices.c.id, devices.c.user).where(*self._where(app_id, f)))
        ).all()
        return [(r.id, r.user) for r in rows]

    async def update(
        self,
        app_id: str,
        f: DeviceFilter,
        *,
        user: str | None = UNSET,
        meta: dict[str, str] | None = UNSET,
        tags: dict[str, str] | None = UNSET,
        channels_op: ChannelOp | None = None,
        channels: Sequence[str] = (),
        locale: str | None = UNSET,
        timezone: str | None = UNSET,
    ) -> int:
        """Bulk update (Centrifugo ``device_update`` semantics); returns how many devices matched."""
        now = time.time()
        async with self.db.write() as conn:
            matched = await self._ids(conn, app_id, f)
            if not matched:
                return 0
            ids = [m[0] for m in matched]
            values: dict[str, Any] = {"updated_at": now}
            if user is not UNSET:
                values["user"] = user
            if meta is not UNSET:
                values["meta"] = json.dumps(meta) if meta else None
            if locale is not UNSET:
                values["locale"] = locale
            if timezone is not UNSET:
                values["timezone"] = timezone
            for chunk in _chunks(ids, 500):
                await conn.execute(sa.update(devices).where(devices.c.id.in_(chunk)).values(**values))
            if tags is not UNSET:
                await self._set_tags(conn, app_id, ids, tags or {})
            if channels_op is not None:
                await self._channels(conn, app_id, ids, channels_op, list(channels))
            if user is not UNSET:
                by_old: dict[str | None, list[str]] = {}
                for dev_id, old in matched:
                    if old != user:
                        by_old.setdefault(old, []).append(dev_id)
                for old, dev_ids in by_old.items():
                    await self._rebind_user(conn, app_id, dev_ids, old, user)
            elif channels_op == "set":
                # "set" must not strip channels the device holds through its user's bindings.
                by_user: dict[str | None, list[str]] = {}
                for dev_id, u in matched:
                    by_user.setdefault(u, []).append(dev_id)
                for u, dev_ids in by_user.items():
                    await self._rebind_user(conn, app_id, dev_ids, None, u)
        return len(matched)

    async def remove(self, app_id: str, f: DeviceFilter) -> int:
        async with self.db.write() as conn:
            ids = [m[0] for m in await self._ids(conn, app_id, f)]
            for chunk in _chunks(ids, 500):
                await conn.execute(sa.delete(device_channels).where(device_channels.c.device_id.in_(chunk)))
                await conn.execute(sa.delete(device_tags).where(device_tags.c.device_id.in_(chunk)))
                await conn.execute(sa.delete(devices).where(devices.c.id.in_(chunk)))
        return len(ids)

    async def prune_inactive(self, seen_before: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` devices (any app) not seen since ``seen_before``; returns how many."""
        async with self.db.write() as conn:
            ids = [
                r.id
                for r in (
                    await conn.execute(
                        sa.select(devices.c.id).where(devices.c.last_seen_at < seen_before).limit(limit)
                    )
                ).all()
            ]
            for chunk in _chunks(ids, 500):
                await conn.execute(sa.delete(device_channels).where(device_channels.c.device_id.in_(chunk)))
                await conn.execute(sa.delete(device_tags).where(device_tags.c.device_id.in_(chunk)))
                await conn.execute(sa.delete(devices).where(devices.c.id.in_(chunk)))
        return len(ids)

    async def set_channel(self, app_id: str, device_id: str, channel: str, present: bool) -> bool:
        async with self.db.write() as conn:
            found = (
                await conn.execute(
                    sa.select(devices.c.id).where(devices.c.app_id == app_id, devices.c.id == device_id)
                )
            ).first()
            if found is None:
                return False
            await self._channels(conn, app_id, [device_id], "add" if present else "remove", [channel])
            await conn.execute(
                sa.update(devices).where(devices.c.id == device_id).values(updated_at=time.time())
            )
        return True

    @staticmethod
    async def invalidate(conn: AsyncConnection, rejected: dict[str, tuple[str, str]], now: float) -> None:
        """A provider said these tokens are gone for good; later fan-outs skip the devices.

        Runs inside the dispatcher's outcome transaction (``rejected``: device id -> (reason,
        the token that was rejected)). Only a device still holding that token is invalidated:
        one re-registered with a fresh token meanwhile (token rotation) stays active.
        """
        if not rejected:
            return
        stmt = (
            sa.update(devices)
            .where(
                devices.c.id == sa.bindparam("did"),
                devices.c.token == sa.bindparam("tok"),
                devices.c.status == "active",
            )
            .values(status="invalid", invalid_reason=sa.bindparam("why"), invalidated_at=now, updated_at=now)
        )
        await conn.execute(
            stmt, [{"did": d, "tok": token, "why": reason[:300]} for d, (reason, token) in rejected.items()]
        )

    # ---- channels and user bindings -----------------------------------------------------

    async def channel_devices(
        self, app_id: str, channel: str, *, cursor: str | None, limit: int
    ) -> tuple[list[Device], str | None]:
        cond = [device_channels.c.app_id == app_id, device_channels.c.channel == channel]
        if cursor:
            cond.append(device_channels.c.device_id > cursor)
        q = (
            sa.select(devices)
            .join(device_channels, device_channels.c.device_id == devices.c.id)
            .where(*cond)
            .order_by(device_channels.c.device_id)
            .limit(limit + 1)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        devs = [_device(r) for r in rows[:limit]]
        return devs, (devs[-1].id if len(rows) > limit else None)

    async def list_channels(
        self, app_id: str, *, cursor: str | None, limit: int, prefix: str | None = None
    ) -> tuple[list[tuple[str, int]], str | None]:
        cond = [device_channels.c.app_id == app_id]
        if cursor:
            cond.append(device_channels.c.channel > cursor)
        if prefix:
            cond.append(device_channels.c.channel.startswith(prefix, autoescape=True))
        q = (
            sa.select(device_channels.c.channel, sa.func.count().label("n"))
            .where(*cond)
            .group_by(device_channels.c.channel)
            .order_by(device_channels.c.channel)
            .limit(limit + 1)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        items = [(r.channel, r.n) for r in rows[:limit]]
        return items, (items[-1][0] if len(rows) > limit else None)

    async def update_user_channels(
        self, app_id: str, user: str, op: ChannelOp, channels: Sequence[str]
    ) -> None:
        """Change a user's bindings and apply the difference to all of the user's devices now."""
        now = time.time()
        async with self.db.write() as conn:
            current = set(await self._user_bound(conn, app_id, user))
            wanted = set(channels)
            if op == "add":
                added, removed = wanted - current, set()
            elif op == "remove":
                added, removed = set(), wanted & current
            else:
                added, removed = wanted - current, current - wanted
            if removed:
                await conn.execute(
                    sa.delete(user_channels).where(
                        user_channels.c.app_id == app_id,
                        user_channels.c.user == user,
                        user_channels.c.channel.in_(removed),
                    )
                )
            if added:
                await conn.execute(
                    sa.insert(user_channels),
                    [
                        {"app_id": app_id, "user": user, "channel": c, "created_at": now}
                        for c in sorted(added)
                    ],
                )
            dev_ids = [
                r.id
                for r in (
                    await conn.execute(
                        sa.select(devices.c.id).where(devices.c.app_id == app_id, devices.c.user == user)
                    )
                ).all()
            ]
            if dev_ids and removed:
                await self._channels(conn, app_id, dev_ids, "remove", sorted(removed))
            if dev_ids and added:
                await self._channels(conn, app_id, dev_ids, "add", sorted(added))

    async def list_user_channels(
        self,
        app_id: str,
        *,
        users: list[str] | None,
        channels: list[str] | None,
        channel_prefix: str | None,
        cursor: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
        cond: list[Any] = [user_channels.c.app_id == app_id]
        if users:
            cond.append(user_channels.c.user.in_(users))
        if channels:
            cond.append(user_channels.c.channel.in_(channels))
        if channel_prefix:
            cond.append(user_channels.c.channel.startswith(channel_prefix, autoescape=True))
        if cursor:
            cond.append(sa.tuple_(user_channels.c.user, user_channels.c.channel) > sa.tuple_(*cursor))
        q = (
            sa.select(user_channels.c.user, user_channels.c.channel)
            .where(*cond)
            .order_by(user_channels.c.user, user_channels.c.channel)
            .limit(limit + 1)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        items = [(r.user, r.channel) for r in rows[:limit]]
        return items, (items[-1] if len(rows) > limit else None)

    async def _user_bound(self, conn: AsyncConnection, app_id: str, user: str | None) -> list[str]:
        if user is None:
            return []
        rows = (
            await conn.execute(
                sa.select(user_channels.c.channel).where(
                    user_channels.c.app_id == app_id, user_channels.c.user == user
                )
            )
        ).all()
        return [r.channel for r in rows]

    async def _rebind_user(
        self, conn: AsyncConnection, app_id: str, dev_ids: list[str], old: str | None, new: str | None
    ) -> None:
        """The old user's bound channels leave the devices; the new user's arrive."""
        if old is not None and old != new:
            gone = await self._user_bound(conn, app_id, old)
            if gone:
                await self._channels(conn, app_id, dev_ids, "remove", gone)
        if new is not None:
            bound = await self._user_bound(conn, app_id, new)
            if bound:
                await self._channels(conn, app_id, dev_ids, "add", bound)

    async def _channels(
        self, conn: AsyncConnection, app_id: str, dev_ids: list[str], op: ChannelOp, channels: list[str]
    ) -> None:
        for chunk in _chunks(dev_ids, 500):
            if op == "set":
                await conn.execute(sa.delete(device_channels).where(device_channels.c.device_id.in_(chunk)))
            if op == "remove":
                if channels:
                    await conn.execute(
                        sa.delete(device_channels).where(
                            device_channels.c.device_id.in_(chunk), device_channels.c.channel.in_(channels)
                        )
                    )
                continue
            rows = [
                {"app_id": app_id, "channel": c, "device_id": d}
                for d in chunk
                for c in dict.fromkeys(channels)
            ]
            if rows:
                stmt = insert_ignoring_conflicts(
                    self.db.dialect, device_channels, ("app_id", "channel", "device_id")
                )
                await conn.execute(stmt, rows)

    async def _set_tags_each(
        self, conn: AsyncConnection, app_id: str, tags: dict[str, dict[str, str]]
    ) -> None:
        """Replace each device's tags with its own map (``device id -> tags``)."""
        ids = list(tags)
        for chunk in _chunks(ids, 500):
            await conn.execute(sa.delete(device_tags).where(device_tags.c.device_id.in_(chunk)))
        rows = [
            {"device_id": d, "app_id": app_id, "key": k, "value": v}
            for d, t in tags.items()
            for k, v in t.items()
        ]
        if rows:
            await conn.execute(sa.insert(device_tags), rows)

    async def _set_channels_each(
        self, conn: AsyncConnection, app_id: str, channels: dict[str, list[str]]
    ) -> None:
        """Replace each device's channels with its own list (``device id -> channels``)."""
        ids = list(channels)
        for chunk in _chunks(ids, 500):
            await conn.execute(sa.delete(device_channels).where(device_channels.c.device_id.in_(chunk)))
        rows = [
            {"app_id": app_id, "channel": c, "device_id": d}
            for d, chans in channels.items()
            for c in dict.fromkeys(chans)
        ]
        if rows:
            await conn.execute(sa.insert(device_channels), rows)

    async def _set_tags(
        self, conn: AsyncConnection, app_id: str, dev_ids: list[str], tags: dict[str, str]
    ) -> None:
        for chunk in _chunks(dev_ids, 500):
            await conn.execute(sa.delete(device_tags).where(device_tags.c.device_id.in_(chunk)))
            rows = [
                {"device_id": d, "app_id": app_id, "key": k, "value": v}
                for d in chunk
                for k, v in tags.items()
            ]
            if rows:
                await conn.execute(sa.insert(device_tags), rows)


def _chunks(items: list[_T], n: int) -> Iterable[list[_T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
