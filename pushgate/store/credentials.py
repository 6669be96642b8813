"""API-managed provider credentials: encrypted rows plus the metadata the API may show."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pushgate.store.db import Database
from pushgate.store.schema import apps, credentials
from pushgate.store.secretbox import SecretBox, SecretKeyError

#: Unreadable credentials named in the start-up refusal; the rest are counted.
_NAMED = 5


@dataclass(slots=True)
class CredentialMeta:
    provider: str
    fingerprint: str
    environment: str | None
    expires_at: float | None
    version: int
    updated_at: float


def credential_store(secret_key: str | None, db: Database) -> CredentialStore:
    """The store, able to decrypt when a master key is configured."""
    return CredentialStore(db, SecretBox(secret_key) if secret_key else None)


async def check_secret_key(db: Database, secret_key: str | None) -> None:
    """Refuse to start (``SecretKeyError``) when credentials uploaded through the API are stored
    and this process cannot decrypt them: ``secret_key`` is missing, or differs from the key
    they were uploaded with. Started anyway, such a process would fail every delivery of those
    apps with ``credential_invalid`` (or, without a key, silently fall back to the config
    file's credentials) and accept uploads no other process can read.

    Every stored row is tried (AES-GCM, microseconds each), so a key that matches some rows but
    not others is caught too. A database without the table yet (first start) has nothing to check.
    """
    async with db.read() as conn:
        if not await conn.run_sync(lambda c: sa.inspect(c).has_table(credentials.name)):
            return
        rows = (
            await conn.execute(
                sa.select(credentials.c.app_id, apps.c.name, credentials.c.provider, credentials.c.ciphertext)
                .join(apps, apps.c.id == credentials.c.app_id, isouter=True)
                .order_by(credentials.c.app_id, credentials.c.provider)
            )
        ).all()
    if not rows:
        return
    if not secret_key:
        raise SecretKeyError(
            f"{len(rows)} provider credential(s) uploaded through the API are stored in the database "
            f"({_names(rows)}), but secret_key is not set: set secret_key (PUSHGATE_SECRET_KEY) to the "
            "key they were uploaded with; every serve and worker process needs the same one"
        )
    box = SecretBox(secret_key)
    unreadable = []
    for row in rows:
        try:
            box.open(row.ciphertext, CredentialStore.context(row.app_id, row.provider))
        except (SecretKeyError, ValueError):
            unreadable.append(row)
    if unreadable:
        raise SecretKeyError(
            f"stored credentials cannot be decrypted: secret_key differs from the one they were "
            f"uploaded with ({len(unreadable)} of {len(rows)}: {_names(unreadable)}). Start with the "
            "secret_key they were stored with (PUSHGATE_SECRET_KEY); to change the key, upload those "
            "credentials again under the new one after deleting them with the old one"
        )


def _names(rows: Sequence[Any]) -> str:
    named = [f"app '{r.name or r.app_id}' {r.provider}" for r in rows[:_NAMED]]
    more = f" and {len(rows) - _NAMED} more" if len(rows) > _NAMED else ""
    return ", ".join(named) + more


# Read on every admission and every batch: prebuilt, so SQLAlchemy's cache finds them at once.
_PROVIDERS_OF = sa.select(credentials.c.provider).where(credentials.c.app_id == sa.bindparam("app"))
_VERSION_OF = sa.select(credentials.c.version).where(
    credentials.c.app_id == sa.bindparam("app"), credentials.c.provider == sa.bindparam("provider")
)


class CredentialStore:
    def __init__(self, db: Database, box: SecretBox | None) -> None:
        self.db = db
        self.box = box
        #: app id -> (monotonic time read, providers): :meth:`providers` with ``max_age``.
        self._providers_seen: dict[str, tuple[float, frozenset[str]]] = {}

    @staticmethod
    def context(app_id: str, provider: str) -> str:
        """The associated data a row's ciphertext is bound to (see ``store/secretbox.py``)."""
        return f"{app_id}/{provider}"

    async def put(
        self,
        app_id: str,
        provider: str,
        settings: dict[str, Any],
        *,
        fingerprint: str,
        environment: str | None,
        expires_at: float | None,
    ) -> CredentialMeta:
        """Insert or rotate; the version moves so every process rebuilds the provider."""
        assert self.box is not None
        self._providers_seen.pop(app_id, None)
        blob = self.box.seal(settings, self.context(app_id, provider))
        now = time.time()
        values = {
            "ciphertext": blob,
            "fingerprint": fingerprint,
            "environment": environment,
            "expires_at": expires_at,
            "updated_at": now,
        }
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    sa.select(credentials.c.version).where(
                        credentials.c.app_id == app_id, credentials.c.provider == provider
                    )
                )
            ).first()
            if row is None:
                await conn.execute(
                    sa.insert(credentials).values(
                        app_id=app_id, provider=provider, version=1, created_at=now, **values
                    )
                )
                version = 1
            else:
                version = row.version + 1
                await conn.execute(
                    sa.update(credentials)
                    .where(credentials.c.app_id == app_id, credentials.c.provider == provider)
                    .values(version=version, **values)
                )
        # Again after the commit: a read between the first pop and the commit cached the old list.
        self._providers_seen.pop(app_id, None)
        return CredentialMeta(provider, fingerprint, environment, expires_at, version, now)

    async def list_meta(self, app_id: str) -> list[CredentialMeta]:
        q = (
            sa.select(
                credentials.c.provider,
                credentials.c.fingerprint,
                credentials.c.environment,
                credentials.c.expires_at,
                credentials.c.version,
                credentials.c.updated_at,
            )
            .where(credentials.c.app_id == app_id)
            .order_by(credentials.c.provider)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [CredentialMeta(*r) for r in rows]

    async def version(self, app_id: str, provider: str) -> int | None:
        async with self.db.read() as conn:
            return (await conn.execute(_VERSION_OF, {"app": app_id, "provider": provider})).scalar()

    async def load(self, app_id: str, provider: str) -> tuple[int, dict[str, Any], float | None] | None:
        """The decrypted settings, their version and expiry, or None when the API stored none."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        credentials.c.version, credentials.c.ciphertext, credentials.c.expires_at
                    ).where(credentials.c.app_id == app_id, credentials.c.provider == provider)
                )
            ).first()
        if row is None or self.box is None:
            return None
        return row.version, self.box.open(row.ciphertext, self.context(app_id, provider)), row.expires_at

    async def delete(self, app_id: str, provider: str) -> bool:
        self._providers_seen.pop(app_id, None)
        async with self.db.write() as conn:
            res = await conn.execute(
                sa.delete(credentials).where(
                    credentials.c.app_id == app_id, credentials.c.provider == provider
                )
            )
        self._providers_seen.pop(app_id, None)  # again after the commit (see put)
        return bool(res.rowcount)

    async def providers(self, app_id: str, *, max_age: float = 0.0) -> set[str]:
        """Providers with credentials stored for the app. ``max_age`` > 0 accepts an answer read
        that many seconds ago (admission: one read per second instead of one per publish); this
        process's own uploads and deletions are seen at once, other processes' within max_age."""
        now = time.monotonic()
        if max_age > 0:
            seen = self._providers_seen.get(app_id)
            if seen is not None and now - seen[0] < max_age:
                return set(seen[1])
        async with self.db.read() as conn:
            rows = (await conn.execute(_PROVIDERS_OF, {"app": app_id})).all()
        found = frozenset(r.provider for r in rows)
        self._providers_seen[app_id] = (now, found)
        return set(found)
