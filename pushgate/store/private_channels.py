"""Private channels (``private_channels``), and the one-row device read a device token needs.

A private channel is a name an app marked: a client or device token may join it only when the
token's ``channels`` claim names it (``domain/client_scopes.py``). The mark is independent of
subscribers: a channel may be private before any device is in it, and stays so when the last
one leaves.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.schema import devices, private_channels


@dataclass(frozen=True, slots=True)
class PrivateChannel:
    channel: str
    created_at: float


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a device token's check reads of its device: that it exists, and whose it is."""

    id: str
    user: str | None
    status: str


class PrivateChannelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def mark(self, app_id: str, channel: str) -> bool:
        """Make ``channel`` private; False when it already was (the first mark's time stays)."""
        async with self.db.write() as conn:
            done = await conn.execute(
                insert_ignoring_conflicts(self.db.dialect, private_channels, ["app_id", "channel"]).values(
                    app_id=app_id, channel=channel, created_at=time.time()
                )
            )
        return bool(done.rowcount)

    async def unmark(self, app_id: str, channel: str) -> bool:
        """Make ``channel`` public again; False when it was not private."""
        async with self.db.write() as conn:
            done = await conn.execute(
                sa.delete(private_channels).where(
                    private_channels.c.app_id == app_id, private_channels.c.channel == channel
                )
            )
        return bool(done.rowcount)

    async def list(
        self, app_id: str, *, cursor: str | None, limit: int
    ) -> tuple[list[PrivateChannel], str | None]:
        cond = [private_channels.c.app_id == app_id]
        if cursor:
            cond.append(private_channels.c.channel > cursor)
        q = (
            sa.select(private_channels.c.channel, private_channels.c.created_at)
            .where(*cond)
            .order_by(private_channels.c.channel)
            .limit(limit + 1)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        items = [PrivateChannel(r.channel, r.created_at) for r in rows[:limit]]
        return items, (items[-1].channel if len(rows) > limit else None)

    async def private_among(self, app_id: str, channels: Iterable[str]) -> set[str]:
        """Which of ``channels`` are private (one indexed read; none asked: no read at all)."""
        names = sorted(set(channels))
        if not names:
            return set()
        q = sa.select(private_channels.c.channel).where(
            private_channels.c.app_id == app_id, private_channels.c.channel.in_(names)
        )
        async with self.db.read() as conn:
            return {r.channel for r in await conn.execute(q)}

    async def device(self, app_id: str, device_id: str) -> DeviceIdentity | None:
        """The device a device token names, by primary key, or None when it was deleted."""
        q = sa.select(devices.c.id, devices.c.user, devices.c.status).where(
            devices.c.app_id == app_id, devices.c.id == device_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return None if row is None else DeviceIdentity(row.id, row.user, row.status)
