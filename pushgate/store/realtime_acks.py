"""Which users acked a publish on a realtime session (table ``realtime_acks``): what the
``first`` mode's second planning pass reads (``store/publishes/policy.py``) to leave their
devices out. Its own module, importing nothing of ``store/publishes``, because the page policy
there reads it (``realtime_deliveries.py`` writes it)."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.schema import realtime_acks

#: Outcome of a ``first`` user's device when a session of the user acked (``skipped``).
ACKED = "realtime_acked"


async def add_ack(conn: AsyncConnection, dialect: str, publish_id: str, user: str, at: float) -> None:
    """The user acked the publish (the first ack counts; later ones change nothing)."""
    await conn.execute(
        insert_ignoring_conflicts(dialect, realtime_acks, ("publish_id", "user")),
        {"publish_id": publish_id, "user": user, "acked_at": at},
    )


async def acked_users(conn: AsyncConnection, publish_id: str, users: Collection[str]) -> set[str]:
    """Which of ``users`` acked the publish on some session (read in the planning page's
    transaction, so the page's skip and its records commit together)."""
    if not users:
        return set()
    q = sa.select(realtime_acks.c.user).where(
        realtime_acks.c.publish_id == publish_id, realtime_acks.c.user.in_(sorted(set(users)))
    )
    return {r.user for r in (await conn.execute(q)).all()}
