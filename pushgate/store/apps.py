"""Apps and their API keys. Keys are stored as SHA-256 hashes and shown only once."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from pushgate.domain.ids import new_id
from pushgate.store.db import Database
from pushgate.store.schema import api_keys, apps


@dataclass(slots=True, frozen=True)
class App:
    id: str
    name: str
    created_at: float


def hash_key(key: str) -> str:
    # Keys are 32 random bytes, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return "pgk_" + secrets.token_urlsafe(32)


#: The shortest API key a person may choose (generated keys are 47 characters): a short key is
#: guessed online; one character used to be accepted.
MIN_CHOSEN_KEY_LENGTH = 24


class KeyTooShort(ValueError):
    def __init__(self) -> None:
        super().__init__(
            f"an API key you choose must be at least {MIN_CHOSEN_KEY_LENGTH} characters "
            "(for example: openssl rand -base64 24); leave it out to get a generated one"
        )


def check_chosen_key(key: str | None) -> None:
    """Raise :class:`KeyTooShort` for a chosen key under the minimum (None: one is generated)."""
    if key is not None and len(key) < MIN_CHOSEN_KEY_LENGTH:
        raise KeyTooShort()


class AppStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, key: str | None = None, app_id: str | None = None) -> tuple[App, str]:
        """Create an app with one key; returns the plain key (the only time it is visible)."""
        check_chosen_key(key)
        key = key or generate_key()
        now = time.time()
        app = App(id=app_id or new_id("app"), name=name, created_at=now)
        async with self.db.write() as conn:
            await conn.execute(sa.insert(apps).values(id=app.id, name=name, created_at=now))
            await conn.execute(
                sa.insert(api_keys).values(
                    id=new_id("key"), app_id=app.id, key_hash=hash_key(key), prefix=key[:8], created_at=now
                )
            )
        return app, key

    async def add_key(self, app_id: str, key: str | None = None) -> str:
        check_chosen_key(key)
        key = key or generate_key()
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(api_keys).values(
                    id=new_id("key"),
                    app_id=app_id,
                    key_hash=hash_key(key),
                    prefix=key[:8],
                    created_at=time.time(),
                )
            )
        return key

    async def get_by_name(self, name: str) -> App | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(apps).where(apps.c.name == name))).first()
        return App(row.id, row.name, row.created_at) if row else None

    async def get(self, app_id: str) -> App | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(apps).where(apps.c.id == app_id))).first()
        return App(row.id, row.name, row.created_at) if row else None

    async def list_apps(self) -> list[tuple[App, int]]:
        q = (
            sa.select(apps, sa.func.count(api_keys.c.id).label("keys"))
            .select_from(apps.outerjoin(api_keys, api_keys.c.app_id == apps.c.id))
            .group_by(apps.c.id, apps.c.name, apps.c.created_at)
            .order_by(apps.c.created_at)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [(App(r.id, r.name, r.created_at), r.keys) for r in rows]

    async def authenticate(self, key: str) -> App | None:
        q = (
            sa.select(apps)
            .join(api_keys, api_keys.c.app_id == apps.c.id)
            .where(api_keys.c.key_hash == hash_key(key))
        )
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        return App(row.id, row.name, row.created_at) if row else None

    async def has_key(self, app_id: str, key: str) -> bool:
        q = sa.select(api_keys.c.id).where(api_keys.c.app_id == app_id, api_keys.c.key_hash == hash_key(key))
        async with self.db.read() as conn:
            return (await conn.execute(q)).first() is not None
