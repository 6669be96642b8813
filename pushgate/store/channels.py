"""Channels: the app's channels with their subscriber counts, a channel's devices, and one
device's subscription to one channel.

A channel exists while some device is in it (``device_channels``); there is no channel table.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from pushgate.store.db import Database
from pushgate.store.devices import Device, device_from_row
from pushgate.store.memberships import Caps, bounded, change_channels
from pushgate.store.schema import device_channels, devices


class ChannelStore:
    def __init__(self, db: Database, caps: Caps | None = None) -> None:
        self.db = db
        self.caps = caps or Caps()

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
        devs = [device_from_row(r) for r in rows[:limit]]
        return devs, (devs[-1].id if len(rows) > limit else None)

    async def set_channel(self, app_id: str, device_id: str, channel: str, present: bool) -> bool:
        """Subscribe (``present``) or unsubscribe one device; False when the device does not exist.

        A subscription that would put the device over ``caps.channels_per_device`` raises
        :class:`~pushgate.store.memberships.TooManyChannels`."""
        async with bounded(self.db, self.caps) as conn:
            found = (
                await conn.execute(
                    sa.select(devices.c.id).where(devices.c.app_id == app_id, devices.c.id == device_id)
                )
            ).first()
            if found is None:
                return False
            await change_channels(conn, app_id, [device_id], "add" if present else "remove", [channel])
            await conn.execute(
                sa.update(devices).where(devices.c.id == device_id).values(updated_at=time.time())
            )
        return True
