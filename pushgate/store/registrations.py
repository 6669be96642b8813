"""Device registration: one typed :class:`Registration` written as an insert-or-update.

A device is keyed by (app, provider, token hash); registering a token again updates that device
and reactivates it (the app has evidence the token works again). A registration that names a
device id rotates that device's token instead. Every function here runs inside the caller's
transaction (``conn`` first); :class:`~pushgate.store.devices.DeviceStore` opens it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.filters import version_key
from pushgate.domain.ids import new_id
from pushgate.store.bindings import rebind_user
from pushgate.store.dialect import upsert_many_replacing
from pushgate.store.memberships import (
    change_channels,
    chunks,
    expect,
    replace_channels_each,
    replace_tags,
    replace_tags_each,
    spent,
)
from pushgate.store.schema import devices


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Not given": the stored value stays (``None`` is a value: it clears the field).
UNSET: Any = _Unset()


def token_hash(provider: str, token_key: str) -> str:
    """The registry key of a token: raw tokens can be long (Web Push subscriptions) and are
    secrets, so lookups go through this hash of the provider and the token's identity."""
    return hashlib.sha256(f"{provider}\x00{token_key}".encode()).hexdigest()


class DeviceConflict(Exception):
    """The token is already registered to another device id."""


class DeviceNotFound(Exception):
    pass


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
_OPTIONAL = ("user", "locale", "timezone", "environment", "meta", "app_version")


@dataclass(slots=True)
class Registration:
    """One device registration, as ``POST /v1/devices`` gives it; ``UNSET`` fields keep their value.

    ``token`` is the normalised token as stored and sent; ``token_key`` its identity (the
    endpoint of a Web Push subscription), which the device is keyed by.
    """

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
    #: As the app reports it; stored with its sortable ``app_version_key`` (version filters).
    app_version: str | None = UNSET
    #: The id a *new* device gets instead of a generated one (front-ends whose clients choose
    #: device ids, e.g. Sockudo's); a token already registered keeps its device and id.
    create_as: str | None = None

    def given(self) -> tuple[str, ...]:
        """The optional ``devices`` columns this registration sets (a version with its key)."""
        names = tuple(name for name in _OPTIONAL if getattr(self, name) is not UNSET)
        return (*names, "app_version_key") if "app_version" in names else names

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
        if self.app_version is not UNSET:
            values["app_version"] = self.app_version or None
            values["app_version_key"] = version_key(self.app_version) if self.app_version else None
        return values


def check_duplicates(regs: Sequence[Registration], hashes: list[str]) -> None:
    """Raise :class:`DeviceBatchDuplicate` if two registrations name the same token or device id:
    one multi-row upsert cannot touch a row twice, and the batch would be ambiguous anyway."""
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


async def register_one(conn: AsyncConnection, app_id: str, reg: Registration, now: float) -> tuple[str, bool]:
    """Write one registration; answers ``(device id, created)``."""
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
        dev_id = reg.create_as or new_id("dev")
        values.setdefault("user", None)
        await conn.execute(sa.insert(devices).values(id=dev_id, app_id=app_id, created_at=now, **values))
        old_user = None
    else:
        assert existing is not None
        dev_id = existing.id
        old_user = existing.user
        await conn.execute(sa.update(devices).where(devices.c.id == dev_id).values(**values))
    await spent(1)
    if reg.tags is not UNSET:
        await replace_tags(conn, app_id, [dev_id], reg.tags or {})
    if reg.channels is not UNSET:
        await change_channels(conn, app_id, [dev_id], "set", reg.channels or [])
    new_user = values.get("user", old_user)
    if created or new_user != old_user or reg.channels is not UNSET:
        await rebind_user(conn, app_id, [dev_id], old_user if not created else None, new_user)
    return dev_id, created


async def register_many(
    conn: AsyncConnection, app_id: str, regs: Sequence[Registration], now: float
) -> list[tuple[str, bool]]:
    """Write every registration of ``regs``; answers ``(device id, created)`` per registration.

    Each registration means exactly what :func:`register_one` means for it. Those without
    ``device_id`` are written with multi-row ``INSERT … ON CONFLICT (app, provider, token) DO
    UPDATE`` statements, one per group of registrations that set the same optional fields (a
    field left out keeps its stored value, so it must not appear in that row's ``SET``). Those
    with ``device_id`` (token rotation) go one by one. Duplicates raise
    :class:`DeviceBatchDuplicate`; a missing or conflicting ``device_id`` raises
    :class:`DeviceBatchError` naming its index. The caller rolls back on either.
    """
    hashes = [token_hash(r.provider, r.token_key) for r in regs]
    check_duplicates(regs, hashes)
    expect(sum(_rows(reg) for reg in regs))
    result: list[tuple[str, bool] | None] = [None] * len(regs)
    for i, reg in enumerate(regs):
        if reg.device_id is not None:
            try:
                result[i] = await register_one(conn, app_id, reg, now)
            except (DeviceNotFound, DeviceConflict) as exc:
                raise DeviceBatchError(i, exc) from None
    plain = [i for i, reg in enumerate(regs) if reg.device_id is None]
    before = await _users_before(
        conn, app_id, [(regs[i].provider, hashes[i]) for i in plain if regs[i].user is not UNSET]
    )
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in plain:
        groups.setdefault(regs[i].given(), []).append(i)
    # User bindings, as register_one applies them, grouped by (old user, new user).
    rebind: dict[tuple[str | None, str | None], list[str]] = {}
    for given, members in groups.items():
        for chunk in chunks(members):
            rows = await _upsert(conn, app_id, [(regs[i], hashes[i]) for i in chunk], given, now)
            await spent(len(chunk))
            for i in chunk:
                row = rows[hashes[i]]
                # An updated row keeps its created_at, so `created_at == now` means inserted.
                created = row.created_at == now
                result[i] = (row.id, created)
                move = _user_move(regs[i], row, created, before.get(hashes[i]))
                if move is not None:
                    rebind.setdefault(move, []).append(row.id)
    done = [_got(r) for r in result]
    # Tags and channels: replaced for the registrations that give them.
    await replace_tags_each(
        conn, app_id, {done[i][0]: regs[i].tags or {} for i in plain if regs[i].tags is not UNSET}
    )
    await replace_channels_each(
        conn, app_id, {done[i][0]: regs[i].channels or [] for i in plain if regs[i].channels is not UNSET}
    )
    for (old_user, new_user), dev_ids in rebind.items():
        await rebind_user(conn, app_id, dev_ids, old_user, new_user)
    return done


def _rows(reg: Registration) -> int:
    """The rows a registration writes at the least: its device, its tags, its own channels."""
    tags = len(reg.tags or {}) if reg.tags is not UNSET else 0
    channels = len(reg.channels or []) if reg.channels is not UNSET else 0
    return 1 + tags + channels


async def _users_before(
    conn: AsyncConnection, app_id: str, keys: list[tuple[str, str]]
) -> dict[str, str | None]:
    """Token hash -> user, before this batch, of the already registered tokens among ``keys``
    (provider, token hash). Needed only where a registration sets a user (to move the user's
    channel bindings); otherwise ``RETURNING`` tells all there is to know."""
    by_provider: dict[str, list[str]] = {}
    for provider, th in keys:
        by_provider.setdefault(provider, []).append(th)
    users: dict[str, str | None] = {}
    for provider, provider_hashes in by_provider.items():
        for some in chunks(provider_hashes):
            rows = await conn.execute(
                sa.select(devices.c.user, devices.c.token_hash).where(
                    devices.c.app_id == app_id,
                    devices.c.provider == provider,
                    devices.c.token_hash.in_(some),
                )
            )
            users.update({r.token_hash: r.user for r in rows})
    return users


async def _upsert(
    conn: AsyncConnection,
    app_id: str,
    regs: list[tuple[Registration, str]],
    given: tuple[str, ...],
    now: float,
) -> dict[str, Any]:
    """Insert or update ``regs`` (registration, token hash) that all set the ``given`` optional
    columns; answers token hash -> returned row (id, token hash, created_at, user)."""
    rows = [
        {"id": new_id("dev"), "app_id": app_id, "created_at": now, **reg.values(th, now)} for reg, th in regs
    ]
    stmt = upsert_many_replacing(
        conn.dialect.name, devices, rows, ("app_id", "provider", "token_hash"), (*_ALWAYS_SET, *given)
    ).returning(devices.c.id, devices.c.token_hash, devices.c.created_at, devices.c.user)
    return {r.token_hash: r for r in await conn.execute(stmt)}


def _user_move(
    reg: Registration, row: Any, created: bool, user_before: str | None
) -> tuple[str | None, str | None] | None:
    """The (old user, new user) whose bindings a registration's device must move between, or
    None when its channels need no rebinding: what :func:`register_one` decides for one device."""
    if created:
        old_user = None
    elif reg.user is not UNSET:
        old_user = user_before
    else:
        old_user = row.user
    if created or row.user != old_user or reg.channels is not UNSET:
        return (old_user, row.user)
    return None


def _got(item: tuple[str, bool] | None) -> tuple[str, bool]:
    assert item is not None
    return item
