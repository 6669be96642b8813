"""Apps and their API keys. Keys are stored as SHA-256 hashes and shown only once.

An app has any number of keys, each with a name, scopes (``domain/scopes.py``) and, once
revoked, the time it was revoked: a revoked key stays listed but authenticates nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.ids import new_id
from pushgate.domain.scopes import ALL_SCOPES, Scope, format_scopes, parse_scopes
from pushgate.store.db import Database
from pushgate.store.schema import api_keys, apps


@dataclass(slots=True, frozen=True)
class App:
    id: str
    name: str
    created_at: float


@dataclass(slots=True, frozen=True)
class ApiKey:
    """A key's metadata: everything but the secret (which is never stored)."""

    id: str
    app_id: str
    name: str
    scopes: frozenset[Scope]
    #: The secret's first 8 characters, so its owner can tell keys apart.
    prefix: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


@dataclass(slots=True, frozen=True)
class Principal:
    """Who a request's key says it is: the app, and the key with its scopes."""

    app: App
    key: ApiKey


#: How often a key's ``last_used_at`` is written at most (per process): a write per request
#: would put the database's write lock on every request's path.
LAST_USED_EVERY = 60.0
#: The name of an app's first key (``apps create``, the ``default`` app's first start).
FIRST_KEY_NAME = "initial"


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


class NoSuchKey(LookupError):
    """No key with that id belongs to that app (another app's key is "no such key" too)."""


class LastAdminKey(ValueError):
    def __init__(self) -> None:
        super().__init__(
            "this is the app's last active admin key: create another admin key first "
            "(POST /v1/keys or `pushgate apps keys create APP NAME --scope admin`), then revoke this one"
        )


def _key(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        app_id=row.app_id,
        name=row.name,
        scopes=parse_scopes([row.scopes]),
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class AppStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, key: str | None = None, app_id: str | None = None) -> tuple[App, str]:
        """Create an app with one key (every scope), in one transaction; returns the plain key
        (the only time it is visible)."""
        check_chosen_key(key)
        now = time.time()
        app = App(id=app_id or new_id("app"), name=name, created_at=now)
        async with self.db.write() as conn:
            await conn.execute(sa.insert(apps).values(id=app.id, name=name, created_at=now))
            _, plain = await self._insert_key(conn, app.id, key, FIRST_KEY_NAME, ALL_SCOPES)
        return app, plain

    async def add_key(
        self,
        app_id: str,
        key: str | None = None,
        *,
        name: str = FIRST_KEY_NAME,
        scopes: frozenset[Scope] = ALL_SCOPES,
    ) -> tuple[ApiKey, str]:
        """A new key of ``app_id``; returns its metadata and the plain key (shown this once)."""
        check_chosen_key(key)
        async with self.db.write() as conn:
            return await self._insert_key(conn, app_id, key, name, scopes)

    @staticmethod
    async def _insert_key(
        conn: AsyncConnection, app_id: str, key: str | None, name: str, scopes: frozenset[Scope]
    ) -> tuple[ApiKey, str]:
        key = key or generate_key()
        row = ApiKey(
            id=new_id("key"),
            app_id=app_id,
            name=name,
            scopes=scopes or ALL_SCOPES,
            prefix=key[:8],
            created_at=time.time(),
            last_used_at=None,
            revoked_at=None,
        )
        await conn.execute(
            sa.insert(api_keys).values(
                id=row.id,
                app_id=app_id,
                key_hash=hash_key(key),
                prefix=row.prefix,
                created_at=row.created_at,
                name=name,
                scopes=format_scopes(row.scopes),
            )
        )
        return row, key

    async def list_keys(self, app_id: str) -> list[ApiKey]:
        """Every key of the app, revoked ones included, oldest first."""
        q = (
            sa.select(api_keys)
            .where(api_keys.c.app_id == app_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        async with self.db.read() as conn:
            return [_key(r) for r in (await conn.execute(q)).all()]

    async def revoke_key(self, app_id: str, key_id: str, *, keep_an_admin: bool = True) -> ApiKey:
        """Revoke one of the app's keys (revoking a revoked key changes nothing).

        ``keep_an_admin``: refuse to revoke the app's last active admin key (the API's rule: an
        app must not lock itself out; the operator's CLI may).
        """
        async with self.db.write() as conn:
            rows = (await conn.execute(sa.select(api_keys).where(api_keys.c.app_id == app_id))).all()
            keys = {r.id: _key(r) for r in rows}
            found = keys.get(key_id)
            if found is None:
                raise NoSuchKey(key_id)
            if found.revoked_at is not None:
                return found
            admins = [k for k in keys.values() if k.revoked_at is None and Scope.ADMIN in k.scopes]
            if keep_an_admin and admins == [found]:
                raise LastAdminKey()
            now = time.time()
            await conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now))
        return replace(found, revoked_at=now)

    async def touch(self, key_id: str) -> None:
        """Record that the key was used now (callers limit this to :data:`LAST_USED_EVERY`)."""
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=time.time())
            )

    async def get_by_name(self, name: str) -> App | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(apps).where(apps.c.name == name))).first()
        return App(row.id, row.name, row.created_at) if row else None

    async def get(self, app_id: str) -> App | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(apps).where(apps.c.id == app_id))).first()
        return App(row.id, row.name, row.created_at) if row else None

    async def find(self, name_or_id: str) -> App | None:
        """An app by name, else by id (what the CLI accepts)."""
        return await self.get_by_name(name_or_id) or await self.get(name_or_id)

    async def list_apps(self) -> list[tuple[App, int]]:
        """Every app with its number of active (not revoked) keys."""
        active = sa.and_(api_keys.c.app_id == apps.c.id, api_keys.c.revoked_at.is_(None))
        q = (
            sa.select(apps, sa.func.count(api_keys.c.id).label("keys"))
            .select_from(apps.outerjoin(api_keys, active))
            .group_by(apps.c.id, apps.c.name, apps.c.created_at)
            .order_by(apps.c.created_at)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [(App(r.id, r.name, r.created_at), r.keys) for r in rows]

    async def authenticate(self, key: str) -> Principal | None:
        """The app and key a plain key belongs to, or None (unknown or revoked)."""
        q = (
            sa.select(apps.c.name.label("app_name"), apps.c.created_at.label("app_created_at"), api_keys)
            .join(api_keys, api_keys.c.app_id == apps.c.id)
            .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
        )
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            return None
        return Principal(App(row.app_id, row.app_name, row.app_created_at), _key(row))

    async def has_key(self, app_id: str, key: str) -> bool:
        """Whether the key was ever one of the app's (revoked keys included: revoking sticks)."""
        q = sa.select(api_keys.c.id).where(api_keys.c.app_id == app_id, api_keys.c.key_hash == hash_key(key))
        async with self.db.read() as conn:
            return (await conn.execute(q)).first() is not None
