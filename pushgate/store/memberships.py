"""What a device belongs to: its channels and its tags, written in the caller's transaction.

Registration, bulk update, subscription and user bindings all change these rows. One set of
writers keeps the chunking (bound parameters per statement are limited) and the channel dedupe
in one place. Every function here runs inside the caller's transaction, so it takes ``conn``
first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.schema import device_channels, device_tags

ChannelOp = Literal["add", "remove", "set"]

#: Device ids per ``IN (…)`` list or per multi-row insert: far below SQLite's and asyncpg's limit
#: of 32,766 bound parameters per statement, whatever the number of channels or tags.
CHUNK = 500

_T = TypeVar("_T")


def chunks(items: list[_T], n: int = CHUNK) -> Iterable[list[_T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


async def change_channels(
    conn: AsyncConnection, app_id: str, dev_ids: list[str], op: ChannelOp, channels: list[str]
) -> None:
    """Add, remove or set the same ``channels`` on every device of ``dev_ids``.

    Adding ignores memberships that already exist, so overlapping sources (the device's own
    subscriptions and its user's bindings) never conflict.
    """
    for chunk in chunks(dev_ids):
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
            {"app_id": app_id, "channel": c, "device_id": d} for d in chunk for c in dict.fromkeys(channels)
        ]
        if rows:
            stmt = insert_ignoring_conflicts(
                conn.dialect.name, device_channels, ("app_id", "channel", "device_id")
            )
            await conn.execute(stmt, rows)


async def replace_channels_each(conn: AsyncConnection, app_id: str, channels: dict[str, list[str]]) -> None:
    """Replace each device's channels with its own list (``device id -> channels``)."""
    for chunk in chunks(list(channels)):
        await conn.execute(sa.delete(device_channels).where(device_channels.c.device_id.in_(chunk)))
    rows = [
        {"app_id": app_id, "channel": c, "device_id": d}
        for d, chans in channels.items()
        for c in dict.fromkeys(chans)
    ]
    if rows:
        await conn.execute(sa.insert(device_channels), rows)


async def replace_tags(conn: AsyncConnection, app_id: str, dev_ids: list[str], tags: dict[str, str]) -> None:
    """Give every device of ``dev_ids`` exactly ``tags``."""
    for chunk in chunks(dev_ids):
        await conn.execute(sa.delete(device_tags).where(device_tags.c.device_id.in_(chunk)))
        rows = [
            {"device_id": d, "app_id": app_id, "key": k, "value": v} for d in chunk for k, v in tags.items()
        ]
        if rows:
            await conn.execute(sa.insert(device_tags), rows)


async def replace_tags_each(conn: AsyncConnection, app_id: str, tags: dict[str, dict[str, str]]) -> None:
    """Replace each device's tags with its own map (``device id -> tags``)."""
    for chunk in chunks(list(tags)):
        await conn.execute(sa.delete(device_tags).where(device_tags.c.device_id.in_(chunk)))
    rows = [
        {"device_id": d, "app_id": app_id, "key": k, "value": v}
        for d, t in tags.items()
        for k, v in t.items()
    ]
    if rows:
        await conn.execute(sa.insert(device_tags), rows)


async def forget(conn: AsyncConnection, dev_ids: list[str]) -> None:
    """Delete the channels and tags of devices about to be deleted."""
    for chunk in chunks(dev_ids):
        await conn.execute(sa.delete(device_channels).where(device_channels.c.device_id.in_(chunk)))
        await conn.execute(sa.delete(device_tags).where(device_tags.c.device_id.in_(chunk)))
