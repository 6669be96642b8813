"""Policy data: an app's policy, its notification categories, users' preferences and quiet hours.

Two sources meet here. The configuration (``[policy]``, ``[apps.<name>.policy]``) gives every
app a policy and categories; the API writes rows that win over it (``app_policies`` replaces
the configured policy as a whole, a ``categories`` row replaces the configured category with
the same id). The store cannot read the settings itself (config sits above it), so it is handed
``configured(app_id, app_name) -> dict`` (``Settings.policy_config``).

Admission and the planner ask "is this category known, and is it opted in by default" on every
publish that names one: :meth:`PolicyStore.category_default` answers from a per-process snapshot
of the app's categories kept ``SNAPSHOT_SECONDS``; this process's own writes drop it at once,
other processes' writes are seen within that time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.store.db import Database
from pushgate.store.dialect import upsert_many_replacing, upsert_replacing
from pushgate.store.schema import app_policies, apps, categories, user_preferences, user_quiet_hours

#: How long a process trusts its snapshot of an app's categories (another process's change to a
#: category is seen by this one within this time).
SNAPSHOT_SECONDS = 2.0
#: Users per ``IN (…)`` list: PostgreSQL and SQLite both take far more, but a statement this
#: size keeps its parameters within every driver's limit.
USERS_PER_QUERY = 500

ConfiguredPolicy = Callable[[str, str], dict[str, Any]]


class CategoryExists(Exception):
    """``create_category`` for an id the app already has (in its table or its configuration)."""

    def __init__(self, category: str) -> None:
        super().__init__(f"category {category!r} already exists (PUT /v1/categories/{category} changes it)")
        self.category = category


@dataclass(slots=True, frozen=True)
class Category:
    id: str
    description: str
    default_opt_in: bool
    #: ``api`` (a row of ``categories``) or ``config``.
    source: Literal["api", "config"]


def _no_config(_app_id: str, _app_name: str) -> dict[str, Any]:
    return {}


def _loads(text: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(text)
    return body


async def opted_out(
    conn: AsyncConnection, app_id: str, category: str, users: Sequence[str], default_opt_in: bool
) -> set[str]:
    """Which of ``users`` do not receive ``category``: an explicit ``opted_in = false``, or no
    choice at all while the category's default is out. One query per ``USERS_PER_QUERY`` users
    on ``ix_user_preferences_category`` (the planner calls it per page, inside its transaction)."""
    wanted = list(dict.fromkeys(users))
    out: set[str] = set()
    for start in range(0, len(wanted), USERS_PER_QUERY):
        chunk = wanted[start : start + USERS_PER_QUERY]
        rows = await conn.execute(
            sa.select(user_preferences.c.user, user_preferences.c.opted_in).where(
                user_preferences.c.app_id == app_id,
                user_preferences.c.category == category,
                user_preferences.c.user.in_(chunk),
            )
        )
        chosen = {r.user: bool(r.opted_in) for r in rows}
        out.update(u for u in chunk if not chosen.get(u, default_opt_in))
    return out


async def user_quiet_hours_of(
    conn: AsyncConnection, app_id: str, users: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The quiet hours (``{start, end, timezone, action}``) of those ``users`` that set their own."""
    wanted = list(dict.fromkeys(users))
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), USERS_PER_QUERY):
        rows = await conn.execute(
            sa.select(user_quiet_hours.c.user, user_quiet_hours.c.body).where(
                user_quiet_hours.c.app_id == app_id,
                user_quiet_hours.c.user.in_(wanted[start : start + USERS_PER_QUERY]),
            )
        )
        out.update((r.user, _loads(r.body)) for r in rows)
    return out


async def has_user_quiet_hours(conn: AsyncConnection, app_id: str) -> bool:
    """Whether any user of the app set quiet hours (else the planner skips the lookup per page)."""
    found = await conn.execute(
        sa.select(user_quiet_hours.c.user).where(user_quiet_hours.c.app_id == app_id).limit(1)
    )
    return found.first() is not None


@dataclass(slots=True)
class _Snapshot:
    categories: dict[str, Category]
    expires: float


class PolicyStore:
    def __init__(self, db: Database, configured: ConfiguredPolicy | None = None) -> None:
        self.db = db
        self.configured = configured or _no_config
        #: App id -> name (apps are never renamed): the configuration is keyed by either.
        self._names: dict[str, str] = {}
        self._snapshots: dict[str, _Snapshot] = {}
        self._policies: dict[str, tuple[float, dict[str, Any], Literal["api", "config"]]] = {}

    # -- configuration ---------------------------------------------------------------------

    async def _name(self, conn: AsyncConnection, app_id: str) -> str:
        name = self._names.get(app_id)
        if name is None:
            found = (await conn.execute(sa.select(apps.c.name).where(apps.c.id == app_id))).scalar()
            name = self._names[app_id] = found or app_id
        return name

    async def _config(self, conn: AsyncConnection, app_id: str) -> dict[str, Any]:
        return self.configured(app_id, await self._name(conn, app_id))

    async def configured_policy(self, app_id: str) -> dict[str, Any]:
        """The app's policy as the configuration gives it (what ``DELETE /v1/policy`` returns to)."""
        async with self.db.read() as conn:
            config = await self._config(conn, app_id)
        return _policy_part(config)

    # -- app policy --------------------------------------------------------------------------

    async def get_app_policy(self, app_id: str) -> dict[str, Any] | None:
        """The policy set through the API, or None (then the configured one applies)."""
        async with self.db.read() as conn:
            body = (
                await conn.execute(sa.select(app_policies.c.body).where(app_policies.c.app_id == app_id))
            ).scalar()
        return None if body is None else _loads(body)

    async def put_app_policy(self, app_id: str, body: dict[str, Any]) -> None:
        values = {"body": json.dumps(body, separators=(",", ":")), "updated_at": clock.now()}
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    upsert_replacing(self.db.dialect, app_policies, {"app_id": app_id}, values)
                )
        finally:
            self._policies.pop(app_id, None)

    async def delete_app_policy(self, app_id: str) -> bool:
        try:
            async with self.db.write() as conn:
                gone = await conn.execute(sa.delete(app_policies).where(app_policies.c.app_id == app_id))
        finally:
            self._policies.pop(app_id, None)
        return bool(gone.rowcount)

    async def cached_policy(
        self, app_id: str, conn: AsyncConnection | None = None
    ) -> tuple[dict[str, Any], Literal["api", "config"]]:
        """:meth:`effective_policy` from a per-process snapshot of ``SNAPSHOT_SECONDS`` (admission
        and the planner: a query per publish saved; the API's own writes drop it at once). The dict
        is shared: read it, never change it."""
        found = self._policies.get(app_id)
        if found is not None and found[0] > time.monotonic():
            return found[1], found[2]
        policy, source = await self.effective_policy(app_id, conn)
        self._policies[app_id] = (time.monotonic() + SNAPSHOT_SECONDS, policy, source)
        return policy, source

    async def effective_policy(
        self, app_id: str, conn: AsyncConnection | None = None
    ) -> tuple[dict[str, Any], Literal["api", "config"]]:
        """``(policy, source)``: the ``app_policies`` row (``api``) or the configuration's
        (``config``), in the shape ``domain/policy.py:AppPolicy.from_dict`` reads."""
        if conn is None:
            async with self.db.read() as own:
                return await self.effective_policy(app_id, own)
        body = (
            await conn.execute(sa.select(app_policies.c.body).where(app_policies.c.app_id == app_id))
        ).scalar()
        if body is not None:
            return _loads(body), "api"
        return _policy_part(await self._config(conn, app_id)), "config"

    # -- categories --------------------------------------------------------------------------

    async def _merged(self, conn: AsyncConnection, app_id: str) -> dict[str, Category]:
        config = await self._config(conn, app_id)
        out = {
            c["id"]: Category(
                c["id"], c.get("description", ""), bool(c.get("default_opt_in", True)), "config"
            )
            for c in config.get("categories", ())
        }
        rows = await conn.execute(
            sa.select(categories).where(categories.c.app_id == app_id).order_by(categories.c.id)
        )
        out.update((r.id, Category(r.id, r.description, bool(r.default_opt_in), "api")) for r in rows)
        self._snapshots[app_id] = _Snapshot(out, time.monotonic() + SNAPSHOT_SECONDS)
        return out

    async def categories_of(self, app_id: str, conn: AsyncConnection | None = None) -> dict[str, Category]:
        """Every category of the app, from the snapshot when it is fresh (see the module)."""
        snap = self._snapshots.get(app_id)
        if snap is not None and snap.expires > time.monotonic():
            return snap.categories
        if conn is not None:
            return await self._merged(conn, app_id)
        async with self.db.read() as own:
            return await self._merged(own, app_id)

    async def category_default(
        self, app_id: str, category: str, conn: AsyncConnection | None = None
    ) -> bool | None:
        """Whether users who never chose receive ``category``; None: the app has no such category
        (a publish naming it is a 400). Cheap: usually answered from the snapshot."""
        found = (await self.categories_of(app_id, conn)).get(category)
        return None if found is None else found.default_opt_in

    async def list_categories(self, app_id: str) -> list[Category]:
        async with self.db.read() as conn:
            merged = await self._merged(conn, app_id)
        return sorted(merged.values(), key=lambda c: c.id)

    async def get_category(self, app_id: str, category: str) -> Category | None:
        async with self.db.read() as conn:
            return (await self._merged(conn, app_id)).get(category)

    async def create_category(
        self, app_id: str, category: str, description: str, default_opt_in: bool
    ) -> Category:
        """Raises :class:`CategoryExists` when the app has it already (table or configuration)."""
        now = clock.now()
        try:
            async with self.db.write() as conn:
                if category in await self._merged(conn, app_id):
                    raise CategoryExists(category)
                await conn.execute(
                    sa.insert(categories).values(
                        app_id=app_id,
                        id=category,
                        description=description,
                        default_opt_in=default_opt_in,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:  # created meanwhile by another process (PostgreSQL)
            raise CategoryExists(category) from None
        finally:
            self._snapshots.pop(app_id, None)
        return Category(category, description, default_opt_in, "api")

    async def update_category(
        self, app_id: str, category: str, description: str, default_opt_in: bool
    ) -> Category | None:
        """Change a category; one only the configuration defines gets a row that overrides it.
        None: the app has no such category."""
        now = clock.now()
        try:
            async with self.db.write() as conn:
                if category not in await self._merged(conn, app_id):
                    return None
                values = {"description": description, "default_opt_in": default_opt_in, "updated_at": now}
                stmt = upsert_many_replacing(
                    self.db.dialect,
                    categories,
                    [{"app_id": app_id, "id": category, "created_at": now, **values}],
                    ["app_id", "id"],
                    list(values),
                )
                await conn.execute(stmt)
        finally:
            self._snapshots.pop(app_id, None)
        return Category(category, description, default_opt_in, "api")

    async def delete_category(self, app_id: str, category: str) -> bool:
        """Delete the category's row; False when there is none (a category only the
        configuration defines cannot be deleted here). Users' choices are kept: a category
        created again with the same id finds them."""
        try:
            async with self.db.write() as conn:
                gone = await conn.execute(
                    sa.delete(categories).where(categories.c.app_id == app_id, categories.c.id == category)
                )
        finally:
            self._snapshots.pop(app_id, None)
        return bool(gone.rowcount)

    # -- preferences -------------------------------------------------------------------------

    async def get_preferences(self, app_id: str, user: str) -> dict[str, bool]:
        """The user's explicit choices (category -> opted in), known categories or not."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(user_preferences.c.category, user_preferences.c.opted_in).where(
                    user_preferences.c.app_id == app_id, user_preferences.c.user == user
                )
            )
            return {r.category: bool(r.opted_in) for r in rows}

    async def set_preferences(self, app_id: str, user: str, choices: dict[str, bool]) -> None:
        """Record the user's choice for each category in ``choices`` (the others stay as they are)."""
        if not choices:
            return
        now = clock.now()
        rows: list[dict[str, object]] = [
            {"app_id": app_id, "user": user, "category": c, "opted_in": v, "updated_at": now}
            for c, v in sorted(choices.items())
        ]
        stmt = upsert_many_replacing(
            self.db.dialect,
            user_preferences,
            rows,
            ["app_id", "user", "category"],
            ["opted_in", "updated_at"],
        )
        async with self.db.write() as conn:
            await conn.execute(stmt)

    async def set_preference(self, app_id: str, user: str, category: str, opted_in: bool) -> None:
        await self.set_preferences(app_id, user, {category: opted_in})

    async def delete_preference(self, app_id: str, user: str, category: str) -> bool:
        """Forget the user's choice: the category's default applies again."""
        async with self.db.write() as conn:
            gone = await conn.execute(
                sa.delete(user_preferences).where(
                    user_preferences.c.app_id == app_id,
                    user_preferences.c.user == user,
                    user_preferences.c.category == category,
                )
            )
        return bool(gone.rowcount)

    # -- user quiet hours --------------------------------------------------------------------

    async def get_user_quiet_hours(self, app_id: str, user: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            found = await user_quiet_hours_of(conn, app_id, [user])
        return found.get(user)

    async def put_user_quiet_hours(self, app_id: str, user: str, body: dict[str, Any]) -> None:
        values = {"body": json.dumps(body, separators=(",", ":")), "updated_at": clock.now()}
        key: dict[str, object] = {"app_id": app_id, "user": user}
        async with self.db.write() as conn:
            await conn.execute(upsert_replacing(self.db.dialect, user_quiet_hours, key, values))
        # The planner's loader re-reads "does the app have user quiet hours" with a new snapshot.
        self._policies.pop(app_id, None)

    async def delete_user_quiet_hours(self, app_id: str, user: str) -> bool:
        async with self.db.write() as conn:
            gone = await conn.execute(
                sa.delete(user_quiet_hours).where(
                    user_quiet_hours.c.app_id == app_id, user_quiet_hours.c.user == user
                )
            )
        self._policies.pop(app_id, None)
        return bool(gone.rowcount)


def _policy_part(config: dict[str, Any]) -> dict[str, Any]:
    """The configured policy without its categories (they have their own routes)."""
    return {
        "default_timezone": config.get("default_timezone", "UTC"),
        "quiet_hours": config.get("quiet_hours"),
        "frequency_caps": list(config.get("frequency_caps", ())),
    }
