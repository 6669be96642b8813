"""Versioned notification templates (docs/templates.md): rows of ``templates``.

Every write adds a row: ``create`` version 1 (or the next after a deleted template of the same
id), ``replace`` the next version; nothing is updated in place, so a publish that recorded a
version can always be explained. ``delete`` stamps ``deleted_at`` on every version: the id is
gone for the API (and may be created again), the rows stay for the record. A publish keeps its
own copy of the body it used (``request["template"]``), so dispatch never reads this table.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.store.db import Database
from pushgate.store.schema import templates

#: The most templates ``list`` returns (an app's templates are a handful, not a fleet).
MAX_LISTED = 1000
#: Tries of a write that raced another write of the same template (both took the same version:
#: the primary key refuses the second, which reads the new highest version and tries again,
#: after a short random pause so a crowd of writers spreads out).
_TRIES = 20


class TemplateExists(Exception):
    def __init__(self, template_id: str) -> None:
        super().__init__(
            f"template {template_id!r} already exists (PUT /v1/templates/{template_id} adds a version)"
        )


@dataclass(slots=True, frozen=True)
class Template:
    id: str
    version: int
    body: dict[str, Any]
    #: When version 1 of this life of the template was written.
    created_at: float
    #: When this version was written.
    updated_at: float


_LIVE = templates.c.deleted_at.is_(None)


async def _versions(conn: AsyncConnection, app_id: str, template_id: str) -> tuple[int, int, float | None]:
    """``(highest version, highest live version or 0, first live version's time)``."""
    row = (
        await conn.execute(
            sa.select(
                sa.func.max(templates.c.version),
                sa.func.max(sa.case((_LIVE, templates.c.version), else_=None)),
                sa.func.min(sa.case((_LIVE, templates.c.created_at), else_=None)),
            ).where(templates.c.app_id == app_id, templates.c.id == template_id)
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0), row[2]


class TemplateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _write(
        self, app_id: str, template_id: str, body: dict[str, Any], *, new: bool
    ) -> Template | None:
        """Add a version; ``new``: only when no live version exists (else :class:`TemplateExists`),
        otherwise only when one does (else None)."""
        for attempt in range(_TRIES):
            now = clock.now()
            try:
                async with self.db.write() as conn:
                    top, live, first = await _versions(conn, app_id, template_id)
                    if new and live:
                        raise TemplateExists(template_id)
                    if not new and not live:
                        return None
                    await conn.execute(
                        sa.insert(templates).values(
                            app_id=app_id,
                            id=template_id,
                            version=top + 1,
                            body=json.dumps(body, separators=(",", ":")),
                            created_at=now,
                        )
                    )
                return Template(template_id, top + 1, body, first if first is not None else now, now)
            except IntegrityError:
                if attempt == _TRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def create(self, app_id: str, template_id: str, body: dict[str, Any]) -> Template:
        """Version 1 (or the next after a deleted life); :class:`TemplateExists` when live."""
        made = await self._write(app_id, template_id, body, new=True)
        assert made is not None
        return made

    async def replace(self, app_id: str, template_id: str, body: dict[str, Any]) -> Template | None:
        """A new version of a live template; None when there is none."""
        return await self._write(app_id, template_id, body, new=False)

    async def delete(self, app_id: str, template_id: str) -> bool:
        async with self.db.write() as conn:
            gone = await conn.execute(
                sa.update(templates)
                .where(templates.c.app_id == app_id, templates.c.id == template_id, _LIVE)
                .values(deleted_at=clock.now())
            )
        return bool(gone.rowcount)

    async def get(self, app_id: str, template_id: str, version: int | None = None) -> Template | None:
        """The current version (or ``version``) of a live template: one statement (every
        templated publish reads its template at admission)."""
        mine = sa.and_(templates.c.app_id == app_id, templates.c.id == template_id, _LIVE)
        live = sa.select(sa.func.max(templates.c.version)).where(mine).scalar_subquery()
        first = sa.select(sa.func.min(templates.c.created_at)).where(mine).scalar_subquery()
        wanted = live if version is None else sa.literal(version)
        stmt = sa.select(
            templates.c.version, templates.c.body, templates.c.created_at, first.label("first")
        ).where(mine, templates.c.version == wanted)
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None or row.first is None:
            return None
        return Template(template_id, row.version, json.loads(row.body), row.first, row.created_at)

    async def list(self, app_id: str) -> list[Template]:
        """The current version of every live template, by id."""
        current = (
            sa.select(
                templates.c.id,
                sa.func.max(templates.c.version).label("version"),
                sa.func.min(templates.c.created_at).label("first"),
            )
            .where(templates.c.app_id == app_id, _LIVE)
            .group_by(templates.c.id)
            .subquery()
        )
        stmt = (
            sa.select(
                templates.c.id, templates.c.version, templates.c.body, templates.c.created_at, current.c.first
            )
            .join(current, sa.and_(templates.c.id == current.c.id, templates.c.version == current.c.version))
            .where(templates.c.app_id == app_id)
            .order_by(templates.c.id)
            .limit(MAX_LISTED)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Template(r.id, r.version, json.loads(r.body), r.first, r.created_at) for r in rows]
