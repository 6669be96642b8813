"""Reading publishes for the API: one publish or a page of them, with counts, and their
delivery records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.status import DeliveryStatus
from pushgate.store.publishes.campaigns import COUNTED, FAILED_COUNTERS, failure_reasons, samples_of
from pushgate.store.publishes.model import Publish, Repository, publish_from_row
from pushgate.store.schema import deliveries, publish_stats, publishes

_BY_ID = sa.select(publishes).where(publishes.c.id == sa.bindparam("pid"))
_BY_ID_IN_APP = _BY_ID.where(publishes.c.app_id == sa.bindparam("app"))
#: A publish by its client-chosen id (``uq_publishes_client_id``).
_BY_CLIENT_ID = sa.select(publishes).where(
    publishes.c.app_id == sa.bindparam("app"), publishes.c.client_id == sa.bindparam("pid")
)
_ID_OF_CLIENT_ID = sa.select(publishes.c.id).where(
    publishes.c.app_id == sa.bindparam("app"), publishes.c.client_id == sa.bindparam("pid")
)
_MANY = sa.select(publishes).where(publishes.c.id.in_(sa.bindparam("pids", expanding=True)))
_STATUS = sa.select(publishes.c.status).where(publishes.c.id == sa.bindparam("pid"))
_STATS_OF = sa.select(publish_stats).where(publish_stats.c.publish_id == sa.bindparam("pid"))
#: A publish's policy outcomes by reason (``ix_deliveries_publish_status`` finds the rows).
_REASONS = (
    sa.select(deliveries.c.status, deliveries.c.error_code, sa.func.count())
    .where(
        deliveries.c.publish_id == sa.bindparam("pid"),
        deliveries.c.status.in_((DeliveryStatus.SUPPRESSED.value, DeliveryStatus.SKIPPED.value)),
    )
    .group_by(deliveries.c.status, deliveries.c.error_code)
)


def is_server_id(publish_id: str) -> bool:
    """Server ids are ``pub_…``; a client's ``publish_id`` may not start so (docs/campaigns.md)."""
    return publish_id.startswith("pub_")


class Reads(Repository):
    async def get(self, app_id: str | None, publish_id: str, *, with_counts: bool = True) -> Publish | None:
        """One publish, by its server id or (with ``app_id``) the client's ``publish_id``; with
        its counts, reasons and (a dry run) samples unless ``with_counts`` is False."""
        if app_id is None:
            q, params = _BY_ID, {"pid": publish_id}
        else:
            q = _BY_ID_IN_APP if is_server_id(publish_id) else _BY_CLIENT_ID
            params = {"pid": publish_id, "app": app_id}
        async with self.db.read() as conn:
            row = (await conn.execute(q, params)).first()
            if row is None:
                return None
            pub = publish_from_row(row)
            if with_counts:
                await self._attach_counts(conn, [pub])
                if pub.counts["suppressed"] or pub.counts["skipped"]:
                    for status, reason, n in (await conn.execute(_REASONS, {"pid": pub.id})).all():
                        pub.reasons.setdefault(status, {})[reason or "unknown"] = int(n)
                failed = sum(pub.counts.get(c, 0) for c in FAILED_COUNTERS)
                pub.failures, pub.failures_truncated = await failure_reasons(conn, pub.id, failed)
                if pub.dry_run:
                    pub.samples = await samples_of(conn, pub.id)
        return pub

    async def resolve(self, app_id: str, publish_id: str) -> str | None:
        """The server id of the app's publish named by ``publish_id`` (a server id is taken as
        it is: the callers check that it is the app's); None: no such client id."""
        if is_server_id(publish_id):
            return publish_id
        async with self.db.read() as conn:
            found: str | None = (
                await conn.execute(_ID_OF_CLIENT_ID, {"app": app_id, "pid": publish_id})
            ).scalar()
        return found

    async def resolve_many(self, app_id: str, publish_ids: Sequence[str]) -> dict[str, str]:
        """:meth:`resolve` for several ids in one read (a dead-letter replay by ``ids``): client
        id → server id for those the app has; server ids map to themselves."""
        out = {p: p for p in publish_ids if is_server_id(p)}
        cids = sorted({p for p in publish_ids if not is_server_id(p)})
        if cids:
            q = sa.select(publishes.c.client_id, publishes.c.id).where(
                publishes.c.app_id == app_id, publishes.c.client_id.in_(cids)
            )
            async with self.db.read() as conn:
                out.update({r.client_id: r.id for r in (await conn.execute(q)).all()})
        return out

    async def get_many(self, publish_ids: Sequence[str]) -> dict[str, Publish]:
        """Several publishes (without counts) in one read, by id; unknown ids are left out."""
        async with self.db.read() as conn:
            rows = (await conn.execute(_MANY, {"pids": list(publish_ids)})).all()
        return {r.id: publish_from_row(r) for r in rows}

    async def status(self, publish_id: str) -> str | None:
        async with self.db.read() as conn:
            return (await conn.execute(_STATUS, {"pid": publish_id})).scalar()

    async def list_publishes(
        self,
        app_id: str,
        *,
        cursor: str | None,
        limit: int,
        status: str | None = None,
        campaign: str | None = None,
    ) -> tuple[list[Publish], str | None]:
        """A page of the app's publishes, newest first, without failure reasons (each publish's
        own read has them: a page costs no delivery records); ``status``: only those in it (one range
        of ``ix_publishes_app_status``, however many publishes of other statuses the app has);
        ``campaign``: only the campaign's (one range of ``ix_publishes_app_campaign``)."""
        cond = [publishes.c.app_id == app_id]
        if status is not None:
            cond.append(publishes.c.status == status)
        if campaign is not None:
            cond.append(publishes.c.campaign == campaign)
        if cursor:
            cond.append(publishes.c.id < cursor)
        q = sa.select(publishes).where(*cond).order_by(publishes.c.id.desc()).limit(limit + 1)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
            pubs = [publish_from_row(r) for r in rows[:limit]]
            await self._attach_counts(conn, pubs)
        for p in pubs:  # a page reads no delivery records: its reasons are on the publish itself
            p.failures = None
        return pubs, (pubs[-1].id if len(rows) > limit else None)

    async def _attach_counts(self, conn: AsyncConnection, pubs: list[Publish]) -> None:
        if not pubs:
            return
        by_id = {p.id: p for p in pubs}
        for p in pubs:
            p.counts = dict.fromkeys(COUNTED, 0)
        if len(pubs) == 1:
            rows = (await conn.execute(_STATS_OF, {"pid": pubs[0].id})).all()
        else:
            rows = (
                await conn.execute(
                    sa.select(publish_stats).where(publish_stats.c.publish_id.in_(list(by_id)))
                )
            ).all()
        for r in rows:
            p = by_id[r.publish_id]
            p.by_provider[r.provider] = {c: getattr(r, c) for c in COUNTED}
            for c in COUNTED:
                p.counts[c] += getattr(r, c)

    async def deliveries(
        self,
        app_id: str,
        publish_id: str,
        *,
        status: str | None,
        provider: str | None,
        cursor: str | None,
        limit: int,
        reason: str | None = None,
    ) -> tuple[list[Any], str | None]:
        # Scoped by app here too, not only by the caller's check of the publish.
        owned = sa.exists().where(publishes.c.id == publish_id, publishes.c.app_id == app_id)
        cond = [deliveries.c.publish_id == publish_id, owned]
        if status:
            cond.append(deliveries.c.status == status)
        if provider:
            cond.append(deliveries.c.provider == provider)
        if reason:
            cond.append(deliveries.c.error_code == reason)
        if cursor:
            cond.append(deliveries.c.recipient_id > cursor)
        q = sa.select(deliveries).where(*cond).order_by(deliveries.c.recipient_id).limit(limit + 1)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        items = list(rows[:limit])
        return items, (items[-1].recipient_id if len(rows) > limit else None)
