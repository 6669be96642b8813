"""The device registry: device rows, read, registered, updated in bulk and removed.

A device's channels and tags live in ``store/memberships.py``, its user's channel bindings in
``store/bindings.py``, the registration write itself in ``store/registrations.py``. This
store opens the transactions around them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.store import registrations
from pushgate.store.bindings import rebind_user
from pushgate.store.db import Database
from pushgate.store.memberships import (
    Caps,
    ChannelOp,
    TooManyRows,
    bounded,
    change_channels,
    chunks,
    expect,
    forget,
    replace_tags,
    spent,
)
from pushgate.store.registrations import UNSET, Registration
from pushgate.store.registrations import token_hash as token_hash  # the key other layers look devices up by
from pushgate.store.schema import device_channels, device_tags, devices


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
    app_version: str | None = None
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


def device_from_row(row: Any) -> Device:
    """A ``devices`` row without its meta, tags and channels (those are attached on request)."""
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
        app_version=row.app_version,
    )


#: Built once: the dispatcher asks it before every chunk.
_STILL_ACTIVE = sa.select(devices.c.id).where(
    devices.c.id.in_(sa.bindparam("ids", expanding=True)), devices.c.status == "active"
)


class DeviceStore:
    """Writes that come from a request run in :func:`~pushgate.store.memberships.bounded`
    transactions: they raise :class:`~pushgate.store.memberships.TooManyRows` or
    :class:`~pushgate.store.memberships.TooManyChannels` past ``caps``, with nothing written."""

    def __init__(self, db: Database, caps: Caps | None = None) -> None:
        self.db = db
        self.caps = caps or Caps()

    async def register(self, app_id: str, reg: Registration) -> tuple[Device, bool]:
        """Insert or update by (app, provider, token); returns the device and whether it is new.

        Registering a token again reactivates it: the app has evidence it works again.
        """
        async with bounded(self.db, self.caps) as conn:
            dev_id, created = await registrations.register_one(conn, app_id, reg, time.time())
            device = await self._load(conn, app_id, dev_id, full=True)
        assert device is not None
        return device, created

    async def register_many(self, app_id: str, regs: Sequence[Registration]) -> list[tuple[str, bool]]:
        """Register or update every device of ``regs`` in one transaction, all or nothing.

        Answers ``(device id, created)`` per registration, in order; errors as
        :func:`~pushgate.store.registrations.register_many` raises them, with nothing written.
        """
        now = time.time()
        async with bounded(self.db, self.caps) as conn:
            return await registrations.register_many(conn, app_id, regs, now)

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
        dev = device_from_row(row)
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
            devs = [device_from_row(r) for r in rows[:limit]]
            if devs and include:
                await self._attach(conn, devs, None, include)
        return devs, (devs[-1].id if more else None)

    async def _ids(self, conn: AsyncConnection, app_id: str, f: DeviceFilter) -> list[tuple[str, str | None]]:
        """(id, user) of the devices ``f`` matches; more than a request may change is refused
        without reading them all (a filter by users has no bound of its own)."""
        q = sa.select(devices.c.id, devices.c.user).where(*self._where(app_id, f))
        cap = self.caps.rows_per_request
        rows = (await conn.execute(q.limit(cap + 1) if cap else q)).all()
        if cap and len(rows) > cap:
            raise TooManyRows(cap)
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
        async with bounded(self.db, self.caps) as conn:
            matched = await self._ids(conn, app_id, f)
            if not matched:
                return 0
            ids = [m[0] for m in matched]
            # The rows this update writes at the least: each device, its tags, the channels it
            # adds or sets (a removal is counted as it deletes: a device may hold none of them).
            adding = len(channels) if channels_op in ("add", "set") else 0
            per_device = 1 + (len(tags or {}) if tags is not UNSET else 0) + adding
            expect(len(ids) * per_device)
            values: dict[str, Any] = {"updated_at": now}
            for key, value in (("user", user), ("locale", locale), ("timezone", timezone)):
                if value is not UNSET:
                    values[key] = value
            if meta is not UNSET:
                values["meta"] = json.dumps(meta) if meta else None
            for chunk in chunks(ids):
                await conn.execute(sa.update(devices).where(devices.c.id.in_(chunk)).values(**values))
                await spent(len(chunk))
            if tags is not UNSET:
                await replace_tags(conn, app_id, ids, tags or {})
            if channels_op is not None:
                await change_channels(conn, app_id, ids, channels_op, list(channels))
            await _rebind_updated(conn, app_id, matched, user, channels_op)
        return len(matched)

    async def remove(self, app_id: str, f: DeviceFilter) -> int:
        async with bounded(self.db, self.caps) as conn:
            ids = [m[0] for m in await self._ids(conn, app_id, f)]
            await _delete(conn, ids)
        return len(ids)

    async def prune_inactive(self, seen_before: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` devices (any app) not seen since ``seen_before``; returns how many."""
        async with self.db.write() as conn:
            q = sa.select(devices.c.id).where(devices.c.last_seen_at < seen_before).limit(limit)
            ids = [r.id for r in (await conn.execute(q)).all()]
            await _delete(conn, ids)
        return len(ids)

    async def still_active(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` still exist and are active: a dispatch job carries copies of its
        targets, so it asks again before each chunk and sends nothing to a device deleted (or
        invalidated) since planning. One primary-key read per chunk."""
        if not ids:
            return set()
        async with self.db.read() as conn:
            return {r.id for r in await conn.execute(_STILL_ACTIVE, {"ids": ids})}

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


async def _rebind_updated(
    conn: AsyncConnection,
    app_id: str,
    matched: list[tuple[str, str | None]],
    user: str | None,
    channels_op: ChannelOp | None,
) -> None:
    """After a bulk update of ``matched`` (device id, user before): a new user moves the devices'
    bound channels; a "set" of channels must not strip the channels a device holds through its
    user's bindings, so those are applied again."""
    if user is not UNSET:
        by_old: dict[str | None, list[str]] = {}
        for dev_id, old in matched:
            if old != user:
                by_old.setdefault(old, []).append(dev_id)
        for old, dev_ids in by_old.items():
            await rebind_user(conn, app_id, dev_ids, old, user)
    elif channels_op == "set":
        by_user: dict[str | None, list[str]] = {}
        for dev_id, u in matched:
            by_user.setdefault(u, []).append(dev_id)
        for u, dev_ids in by_user.items():
            await rebind_user(conn, app_id, dev_ids, None, u)


async def _delete(conn: AsyncConnection, ids: list[str]) -> None:
    """Delete devices with their channels and tags."""
    for chunk in chunks(ids):
        await forget(conn, chunk)
        await conn.execute(sa.delete(devices).where(devices.c.id.in_(chunk)))
        await spent(len(chunk))
