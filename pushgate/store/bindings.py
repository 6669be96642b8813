"""User → channel bindings (``user_channels``) and their application to the user's devices.

A binding is applied to devices whenever a device gains a user, is registered for one, or the
binding changes, so a publish to a channel never has to join through users at send time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.store.db import Database
from pushgate.store.memberships import (
    Caps,
    ChannelOp,
    TooManyChannels,
    bounded,
    change_channels,
    delete_rows,
    expect,
    insert_rows,
)
from pushgate.store.schema import devices, user_channels


async def bound_channels(conn: AsyncConnection, app_id: str, user: str | None) -> list[str]:
    """The channels bound to ``user`` (none for a device without a user)."""
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


async def rebind_user(
    conn: AsyncConnection, app_id: str, dev_ids: list[str], old: str | None, new: str | None
) -> None:
    """Devices moved from user ``old`` to ``new``: the old user's bound channels leave them, the
    new user's arrive (with ``old`` None, this re-applies ``new``'s bindings)."""
    if old is not None and old != new:
        gone = await bound_channels(conn, app_id, old)
        if gone:
            await change_channels(conn, app_id, dev_ids, "remove", gone)
    if new is not None:
        bound = await bound_channels(conn, app_id, new)
        if bound:
            await change_channels(conn, app_id, dev_ids, "add", bound)


async def _user_devices(conn: AsyncConnection, app_id: str, user: str) -> list[str]:
    rows = await conn.execute(
        sa.select(devices.c.id).where(devices.c.app_id == app_id, devices.c.user == user)
    )
    return [r.id for r in rows]


def _difference(op: ChannelOp, current: set[str], wanted: set[str]) -> tuple[set[str], set[str]]:
    """The bindings ``op`` adds and removes, given the ``current`` ones and the request's."""
    if op == "add":
        return wanted - current, set()
    if op == "remove":
        return set(), wanted & current
    return wanted - current, current - wanted


class BindingStore:
    def __init__(self, db: Database, caps: Caps | None = None) -> None:
        self.db = db
        self.caps = caps or Caps()

    async def update_user_channels(
        self, app_id: str, user: str, op: ChannelOp, channels: Sequence[str]
    ) -> None:
        """Change a user's bindings and apply the difference to all of the user's devices now.

        Raises :class:`~pushgate.store.memberships.TooManyChannels` (the user's bindings, or one
        of the user's devices, over ``caps.channels_per_device``) or
        :class:`~pushgate.store.memberships.TooManyRows`, with nothing written."""
        now = time.time()
        async with bounded(self.db, self.caps) as conn:
            current = set(await bound_channels(conn, app_id, user))
            added, removed = _difference(op, current, set(channels))
            after = len(current) + len(added) - len(removed)
            if added and after > self.caps.channels_per_device:
                raise TooManyChannels(f"user {user!r}", after, self.caps.channels_per_device)
            dev_ids = await _user_devices(conn, app_id, user)
            # Each binding added or removed is a row on every one of the user's devices.
            expect((len(dev_ids) + 1) * (len(added) + len(removed)))
            if removed:
                await delete_rows(
                    conn,
                    user_channels,
                    user_channels.c.app_id == app_id,
                    user_channels.c.user == user,
                    user_channels.c.channel.in_(sorted(removed)),
                )
            if added:
                await insert_rows(
                    conn,
                    sa.insert(user_channels),
                    (
                        {"app_id": app_id, "user": user, "channel": c, "created_at": now}
                        for c in sorted(added)
                    ),
                )
            if dev_ids and removed:
                await change_channels(conn, app_id, dev_ids, "remove", sorted(removed))
            if dev_ids and added:
                await change_channels(conn, app_id, dev_ids, "add", sorted(added))

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
