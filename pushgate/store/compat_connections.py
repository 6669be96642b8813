"""notification-socket.io's connection ids: which (app, user) a client's socket ``register``
stands for (docs/compat.md, "notification-socket.io").

The backend registers a connection id for its user over REST; the client then shows the user and
the id on its socket. The ids are bearer secrets, so only their SHA-256 (with the user) is
stored, and they expire: :data:`TTL_SECONDS` after the registration or after the last socket
``register`` that used it (a tab that keeps reconnecting keeps its id alive; one that vanished
stops being accepted). notification-socket.io itself keeps them in memory until it restarts, so
any bound is stricter than the original; a day covers a working session's reconnections.
Expired rows are ignored at once and deleted by the next registration (one indexed DELETE).
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from pushgate.store.db import Database
from pushgate.store.dialect import upsert_replacing
from pushgate.store.schema import compat_connections

#: How long a connection id stays valid after its registration or its last use by a socket.
TTL_SECONDS = 24 * 3600.0


def connection_hash(user: str, connection_id: str) -> str:
    """The stored key: the id's hash with its user (one id may serve several users, as in
    notification-socket.io, where connection ids live under their user)."""
    return hashlib.sha256(f"{user}\n{connection_id}".encode()).hexdigest()


class CompatConnections:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def register(self, app_id: str, user: str, connection_id: str, now: float) -> None:
        """Store (or renew) the connection id for the app's user; drop every expired one."""
        key: dict[str, object] = {"conn_hash": connection_hash(user, connection_id), "app_id": app_id}
        values: dict[str, object] = {"user": user, "created_at": now, "expires_at": now + TTL_SECONDS}
        async with self.db.write() as conn:
            await conn.execute(upsert_replacing(self.db.dialect, compat_connections, key, values))
            await conn.execute(sa.delete(compat_connections).where(compat_connections.c.expires_at <= now))

    async def find(self, user: str, connection_id: str, now: float) -> str | None:
        """The app whose user registered this connection id (and renew it), or None: unknown,
        expired, or held by two apps at once (ambiguous: neither is chosen)."""
        digest = connection_hash(user, connection_id)
        query = sa.select(compat_connections.c.app_id).where(
            compat_connections.c.conn_hash == digest,
            compat_connections.c.user == user,
            compat_connections.c.expires_at > now,
        )
        async with self.db.read() as conn:
            apps = [row.app_id for row in await conn.execute(query.limit(2))]
        if len(apps) != 1:
            return None
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(compat_connections)
                .where(compat_connections.c.conn_hash == digest, compat_connections.c.app_id == apps[0])
                .values(expires_at=now + TTL_SECONDS)
            )
        return str(apps[0])
