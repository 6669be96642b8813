"""Planning: resolve a publish's recipients page by page into dispatch batches.

The whole audience is never in memory: each page of devices becomes delivery records and
dispatch jobs in one transaction that also saves the planner's cursor, so a crash resumes at
the page it was on and the (publish, recipient) key drops anything already planned.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pushgate.store.db import Database
from pushgate.store.devices import token_hash
from pushgate.store.publishes import Publish, PublishStore
from pushgate.store.queue import Job, JobQueue
from pushgate.store.schema import device_channels, devices


@dataclass(slots=True)
class PlanContext:
    app_name: str
    configured: set[str]
    batch_size: int
    page_size: int
    lease_seconds: float
    #: Devices last seen before this epoch time are skipped (``devices.max_inactive_days``).
    seen_after: float | None = None


def _row(r: Any) -> dict[str, Any]:
    return {
        "recipient_id": r.id,
        "device_id": r.id,
        "provider": r.provider,
        "token": r.token,
        "environment": r.environment,
    }


def raw_recipient_id(provider: str, token_key: str) -> str:
    return "tok_" + token_hash(provider, token_key)[:32]


class Planner:
    def __init__(self, db: Database, publishes: PublishStore, on_batches: Callable[[], None]) -> None:
        self.db = db
        self.publishes = publishes
        #: Called after each committed page so idle workers start sending while planning goes on.
        self.on_batches = on_batches

    async def _pages(
        self,
        app_id: str,
        entry: dict[str, Any],
        cursor: str | None,
        page_size: int,
        seen_after: float | None = None,
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        """Yield ``(rows, cursor_after)`` for one recipient entry; ``cursor_after`` None = entry done."""
        kind = entry["type"]
        cols = (devices.c.id, devices.c.provider, devices.c.token, devices.c.environment)
        # Stale devices (not seen since ``seen_after``) are not reached through any recipient.
        fresh = devices.c.last_seen_at >= seen_after if seen_after is not None else sa.true()
        if kind in ("channel", "user"):
            while True:
                if kind == "channel":
                    q = (
                        sa.select(*cols)
                        .join(device_channels, device_channels.c.device_id == devices.c.id)
                        .where(
                            device_channels.c.app_id == app_id,
                            device_channels.c.channel == entry["channel"],
                            devices.c.status == "active",
                            fresh,
                        )
                        .order_by(device_channels.c.device_id)
                    )
                    if cursor:
                        q = q.where(device_channels.c.device_id > cursor)
                else:
                    q = (
                        sa.select(*cols)
                        .where(
                            devices.c.app_id == app_id,
                            devices.c.user == entry["user"],
                            devices.c.status == "active",
                            fresh,
                        )
                        .order_by(devices.c.id)
                    )
                    if cursor:
                        q = q.where(devices.c.id > cursor)
                async with self.db.read() as conn:
                    rows = (await conn.execute(q.limit(page_size))).all()
                out = [_row(r) for r in rows]
                cursor = rows[-1].id if len(rows) == page_size else None
                yield out, cursor
                if cursor is None:
                    return
        elif kind == "device":
            async with self.db.read() as conn:
                rows = (
                    await conn.execute(
                        sa.select(*cols).where(
                            devices.c.app_id == app_id,
                            devices.c.id == entry["device_id"],
                            devices.c.status == "active",
                            fresh,
                        )
                    )
                ).all()
            yield [_row(r) for r in rows], None
        elif kind == "token":
            provider, token_key = entry["provider"], entry["token_key"]
            async with self.db.read() as conn:
                row = (
                    await conn.execute(
                        sa.select(*cols, devices.c.status, fresh.label("fresh")).where(
                            devices.c.app_id == app_id,
                            devices.c.provider == provider,
                            devices.c.token_hash == token_hash(provider, token_key),
                        )
                    )
                ).first()
            if row is not None:
                # A registered token is that device: dedupes with the other recipients.
                rows_out = [_row(row)] if row.status == "active" and row.fresh else []
            else:
                rows_out = [
                    {
                        "recipient_id": raw_recipient_id(provider, token_key),
                        "device_id": None,
                        "provider": provider,
                        "token": entry["token"],
                    }
                ]
            yield rows_out, None
        elif kind == "native":
            # A provider-side audience (FCM/HMS topic or condition): one request, no device record.
            yield (
                [
                    {
                        "recipient_id": "nat_" + token_hash(entry["provider"], entry["token"])[:32],
                        "device_id": None,
                        "provider": entry["provider"],
                        "token": entry["token"],
                    }
                ],
                None,
            )
        else:  # pragma: no cover - admission validated the types
            raise ValueError(f"unknown recipient type {kind!r}")

    async def run(self, job: Job, pub: Publish, ctx: PlanContext) -> bool:
        """Plan the publish; returns True when planning is complete (the job is gone)."""
        recipients: list[dict[str, Any]] = pub.request.get("recipients", [])
        i: int = job.payload.get("i", 0)
        cursor: str | None = job.payload.get("cursor")
        stats: dict[str, int] = job.payload.get("stats") or {
            "dispatched": 0,
            "no_credentials": 0,
            "planned": 0,
        }
        while i < len(recipients):
            entry = recipients[i]
            async for rows, after in self._pages(pub.app_id, entry, cursor, ctx.page_size, ctx.seen_after):
                next_i, next_cursor = (i, after) if after is not None else (i + 1, None)
                if not await self._commit_page(
                    job, pub, ctx, rows, stats, {"i": next_i, "cursor": next_cursor}
                ):
                    return True  # cancelled: the cancel deleted this job and closed the publish
                self.on_batches()
            i, cursor = i + 1, None
        async with self.db.write() as conn:
            await self.publishes.set_planning_done(conn, pub.id)
            await JobQueue.delete(conn, job.id)
        if stats["planned"] > 0 and stats["dispatched"] == 0 and stats["no_credentials"] == stats["planned"]:
            await self.publishes.fail(
                pub.id,
                "no_credentials",
                "none of the targeted providers has credentials for this app; "
                "add them to the config ([fcm] / [webpush] or [apps.<name>.<provider>])",
            )
        else:
            await self.publishes.finish_if_done(pub.id)
        return True

    async def _commit_page(
        self,
        job: Job,
        pub: Publish,
        ctx: PlanContext,
        rows: list[dict[str, Any]],
        stats: dict[str, int],
        progress: dict[str, Any],
    ) -> bool:
        """Commit one page; False (and nothing written) when the publish was cancelled."""
        now = time.time()
        expired = pub.expire_at is not None and now >= pub.expire_at
        for r in rows:
            if expired:
                r["status"], r["error_code"] = "expired", "expired"
            elif r["provider"] not in ctx.configured:
                r["status"], r["error_code"] = "failed", "no_credentials"
                r["error_message"] = f"app {ctx.app_name!r} has no {r['provider']} credentials"
        async with self.db.write() as conn:
            # Checked under the publish's shared lock: a cancel is either seen here or waits
            # for this page, whose pending records it then cancels.
            if await self.publishes.status_locked(conn, pub.id) == "cancelled":
                return False
            fresh = await self.publishes.insert_planned(conn, pub.id, rows)
            per_provider: dict[str, dict[str, int]] = {}
            batches: dict[str, list[list[str]]] = {}
            for r in rows:
                if r["recipient_id"] not in fresh:
                    continue
                fresh.discard(r["recipient_id"])  # a repeat inside the page counts once
                c = per_provider.setdefault(r["provider"], {"planned": 0, "failed": 0, "expired": 0})
                c["planned"] += 1
                status = r.get("status")
                if status == "expired":
                    c["expired"] += 1
                elif status == "failed":
                    c["failed"] += 1
                    stats["no_credentials"] += 1
                else:
                    target = [r["recipient_id"], r["token"]]
                    if r.get("environment"):
                        target.append(r["environment"])
                    batches.setdefault(r["provider"], []).append(target)
                stats["planned"] += 1
            for provider, counts in per_provider.items():
                await self.publishes.bump(conn, pub.id, provider, **counts)
            jobs: list[dict[str, Any]] = []
            for provider, targets in batches.items():
                stats["dispatched"] += len(targets)
                for k in range(0, len(targets), ctx.batch_size):
                    jobs.append(
                        {
                            "kind": "dispatch",
                            "app_id": pub.app_id,
                            "publish_id": pub.id,
                            "payload": {
                                "provider": provider,
                                "attempt": 1,
                                "targets": targets[k : k + ctx.batch_size],
                            },
                        }
                    )
            await JobQueue.enqueue_many(conn, jobs)
            await JobQueue.save_progress(conn, job.id, {**progress, "stats": stats}, now + ctx.lease_seconds)
        return True
