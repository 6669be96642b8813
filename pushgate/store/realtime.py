"""Realtime connection-token secrets: one per app, shared by every node through the database."""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa

from pushgate.store.db import Database
from pushgate.store.dialect import insert_ignoring_conflicts
from pushgate.store.schema import realtime_secrets

#: How long a process keeps an app's secret before reading it again: a rotation on another node
#: is seen within this time (tokens signed with the old secret stop verifying then).
CACHE_SECONDS = 5.0


class RealtimeSecrets:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[str, float]] = {}

    async def secret(self, app_id: str) -> str:
        """The app's signing secret, made on first use. ``INSERT … ON CONFLICT DO NOTHING`` then
        a read: two nodes asking at once both end up with the one that was written first."""
        hit = self._cache.get(app_id)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        query = sa.select(realtime_secrets.c.secret).where(realtime_secrets.c.app_id == app_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            async with self.db.write() as conn:
                await conn.execute(
                    insert_ignoring_conflicts(self.db.dialect, realtime_secrets, ["app_id"]).values(
                        app_id=app_id, secret=secrets.token_urlsafe(32), created_at=time.time()
                    )
                )
                row = (await conn.execute(query)).one()
        self._cache[app_id] = (row.secret, time.monotonic() + CACHE_SECONDS)
        return str(row.secret)

    async def rotate(self, app_id: str) -> str:
        """A new secret for the app: tokens signed with the old one no longer connect (open
        sessions stay open until they disconnect)."""
        new = secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            done = await conn.execute(
                sa.update(realtime_secrets).where(realtime_secrets.c.app_id == app_id).values(secret=new)
            )
            if done.rowcount == 0:
                await conn.execute(
                    sa.insert(realtime_secrets).values(app_id=app_id, secret=new, created_at=time.time())
                )
        self._cache[app_id] = (new, time.monotonic() + CACHE_SECONDS)
        return new
