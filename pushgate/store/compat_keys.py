"""Signing keys of compat front-ends that sign requests with a shared secret (Sockudo).

Pusher-style signing (``domain/pusher_signing.py``) needs the secret itself on the server, so
unlike API keys (stored hashed) it is stored *readable*: sealed with the server's
``secret_key`` (AES-GCM, ``store/secretbox.py``) and bound to its row, so a ciphertext copied
onto another key or app does not open. The key id (``auth_key``) is public and names the app:
a signed request carries it in the clear.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from pushgate.store.db import Database
from pushgate.store.schema import compat_signing_keys as keys
from pushgate.store.secretbox import SecretBox, SecretKeyError


class NoSuchSigningKey(Exception):
    """No key with that id for that app and front-end."""


@dataclass(slots=True, frozen=True)
class SigningKey:
    """A key's metadata: everything but its secret."""

    auth_key: str
    app_id: str
    system: str
    created_at: float
    rotated_at: float | None


def _new_secret() -> str:
    # 32 random bytes as hex: what Pusher-style SDKs expect (a plain ASCII string).
    return secrets.token_hex(32)


class CompatKeyStore:
    """Create, list, rotate, delete and resolve signing keys; ``box`` None: no ``secret_key``
    is configured, so nothing can be sealed or opened (the API answers 409 / 401)."""

    def __init__(self, db: Database, box: SecretBox | None) -> None:
        self.db = db
        self.box = box

    @staticmethod
    def context(system: str, app_id: str, auth_key: str) -> str:
        """The associated data a secret is bound to (see ``store/secretbox.py``)."""
        return f"compat/{system}/{app_id}/{auth_key}"

    def _seal(self, system: str, app_id: str, auth_key: str, secret: str) -> bytes:
        if self.box is None:
            raise SecretKeyError("secret_key is not set")
        return self.box.seal({"secret": secret}, self.context(system, app_id, auth_key))

    async def create(self, app_id: str, system: str) -> tuple[SigningKey, str]:
        """A new key and its secret (the only time the secret leaves the store unasked)."""
        auth_key = secrets.token_hex(10)
        secret = _new_secret()
        now = time.time()
        blob = self._seal(system, app_id, auth_key, secret)
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(keys).values(
                    auth_key=auth_key, app_id=app_id, system=system, ciphertext=blob, created_at=now
                )
            )
        return SigningKey(auth_key, app_id, system, now, None), secret

    async def list_keys(self, app_id: str, system: str) -> list[SigningKey]:
        q = (
            sa.select(keys.c.auth_key, keys.c.app_id, keys.c.system, keys.c.created_at, keys.c.rotated_at)
            .where(keys.c.app_id == app_id, keys.c.system == system)
            .order_by(keys.c.created_at, keys.c.auth_key)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [SigningKey(*r) for r in rows]

    async def rotate(self, app_id: str, system: str, auth_key: str) -> tuple[SigningKey, str]:
        """A new secret for the key (the old one stops working at once); ``NoSuchSigningKey``."""
        secret = _new_secret()
        blob = self._seal(system, app_id, auth_key, secret)
        now = time.time()
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.update(keys)
                .where(keys.c.auth_key == auth_key, keys.c.app_id == app_id, keys.c.system == system)
                .values(ciphertext=blob, rotated_at=now)
            )
            if not res.rowcount:
                raise NoSuchSigningKey(auth_key)
            created = (
                await conn.execute(sa.select(keys.c.created_at).where(keys.c.auth_key == auth_key))
            ).scalar_one()
        return SigningKey(auth_key, app_id, system, created, now), secret

    async def delete(self, app_id: str, system: str, auth_key: str) -> bool:
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.delete(keys).where(
                    keys.c.auth_key == auth_key, keys.c.app_id == app_id, keys.c.system == system
                )
            )
        return bool(res.rowcount)

    async def resolve(self, system: str, auth_key: str) -> tuple[SigningKey, str] | None:
        """The key and its readable secret, or None (unknown key, or no ``secret_key`` to open
        it with). ``SecretKeyError``: stored under another ``secret_key`` than this process's."""
        if self.box is None:
            return None
        q = sa.select(keys).where(keys.c.auth_key == auth_key, keys.c.system == system)
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            return None
        secret = str(self.box.open(row.ciphertext, self.context(system, row.app_id, auth_key))["secret"])
        return SigningKey(row.auth_key, row.app_id, row.system, row.created_at, row.rotated_at), secret
