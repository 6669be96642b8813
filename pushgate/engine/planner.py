"""Planning: resolve a publish's recipients page by page into dispatch batches.

The whole audience is never in memory: each page of devices becomes delivery records and
dispatch jobs in one transaction that also saves the planner's cursor, so a crash resumes at
the page it was on and the (publish, recipient) key drops anything already planned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pushgate.providers.base import Target
from pushgate.store.audience import Audience
from pushgate.store.db import Database
from pushgate.store.publishes import Publish, PublishStore
from pushgate.store.queue import Job, JobQueue


@dataclass(slots=True)
class PlanContext:
    app_name: str
    configured: set[str]
    batch_size: int
    page_size: int
    lease_seconds: float
    #: Devices last seen before this epoch time are skipped (``devices.max_inactive_days``).
    seen_after: float | None = None


class Planner:
    def __init__(self, db: Database, publishes: PublishStore, on_batches: Callable[[], None]) -> None:
        self.db = db
        self.publishes = publishes
        self.audience = Audience(db)
        #: Called after each committed page so idle workers start sending while planning goes on.
        self.on_batches = on_batches

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
            async for rows, after in self.audience.pages(
                pub.app_id, entry, cursor, ctx.page_size, ctx.seen_after
            ):
                next_i, next_cursor = (i, after) if after is not None else (i + 1, None)
                if not await self._commit_page(
                    job, pub, ctx, rows, stats, {"i": next_i, "cursor": next_cursor}
                ):
                    return True  # cancelled: the cancel deleted this job and closed the publish
                self.on_batches()
            i, cursor = i + 1, None
        # One transaction ends planning: the publish is marked started (a no-op after the first
        # page), planning done, the job deleted, and a publish with nothing left to send closed.
        async with self.db.write() as conn:
            await self.publishes.mark_started(pub.id, conn)
            await self.publishes.set_planning_done(conn, pub.id)
            await JobQueue.delete(conn, job.id)
            no_credentials = stats["no_credentials"] == stats["planned"]
            if stats["planned"] > 0 and stats["dispatched"] == 0 and no_credentials:
                await self.publishes.fail(
                    pub.id,
                    "no_credentials",
                    "none of the targeted providers has credentials for this app; "
                    "add them to the config ([fcm] / [webpush] or [apps.<name>.<provider>])",
                    conn,
                )
            else:
                await self.publishes.close_if_done(conn, pub.id)
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
            await self.publishes.mark_started(pub.id, conn)
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
                    target = Target(r["recipient_id"], r["token"], r.get("environment")).row()
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
