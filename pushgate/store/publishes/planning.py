"""What planning writes, inside the caller's transaction: a page's delivery records and counters,
and the end of planning. The planner (page by page) and admission (a small publish at once) both
write through these, so a publish planned either way reads the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.domain.jobs import PlanStats
from pushgate.domain.planning import mark_unsendable, tally
from pushgate.domain.status import POLICY_STATUSES
from pushgate.metrics import POLICY_OUTCOMES
from pushgate.store.publishes.lifecycle import Lifecycle
from pushgate.store.publishes.outcomes import Outcomes, bump_many
from pushgate.store.publishes.policy import PagePolicy, apply_policy
from pushgate.store.queue import JobQueue

NO_CREDENTIALS = (
    "none of the targeted providers has credentials for this app; "
    "add them to the config ([fcm] / [webpush] or [apps.<name>.<provider>])"
)


@dataclass(slots=True)
class PlannedPage:
    """A page of one publish's resolved recipients, with what decides their fate."""

    publish_id: str
    rows: list[dict[str, Any]]
    #: The plan's running totals (moved by the page).
    stats: PlanStats
    expired: bool
    configured: frozenset[str]
    app_name: str
    #: The publish's policy (None or inactive: every row goes now).
    policy: PagePolicy | None = None
    #: Targets per release batch of held rows (``engine.batch_size``).
    batch_size: int | None = None


_POLICY = frozenset(s.value for s in POLICY_STATUSES)


def _count_policy(rows: list[dict[str, Any]], new: set[str]) -> None:
    """The policy metric, for the rows this page planned (a re-planned page counts nothing)."""
    seen: set[str] = set()
    for r in rows:
        if r.get("status") in _POLICY and r["recipient_id"] in new and r["recipient_id"] not in seen:
            seen.add(r["recipient_id"])
            POLICY_OUTCOMES.labels(r["status"], r.get("error_code") or "unknown").inc()


class Planning(Lifecycle, Outcomes):
    async def plan_rows(
        self,
        conn: AsyncConnection,
        publish_id: str,
        rows: list[dict[str, Any]],
        stats: PlanStats,
        *,
        expired: bool,
        configured: set[str] | frozenset[str],
        app_name: str,
        policy: PagePolicy | None = None,
        batch_size: int | None = None,
    ) -> dict[str, list[list[str]]]:
        """Insert the rows' delivery records and move the counters of the new ones; returns
        their targets by provider, for the caller to put into dispatch jobs (rows policy holds
        are queued here, as release batches due at their release time)."""
        page = PlannedPage(
            publish_id, rows, stats, expired, frozenset(configured), app_name, policy, batch_size
        )
        [batches] = await self.plan_pages(conn, [page])
        return batches

    async def plan_pages(
        self, conn: AsyncConnection, pages: Sequence[PlannedPage]
    ) -> list[dict[str, list[list[str]]]]:
        """:meth:`plan_rows` for pages of several publishes, in one insert and one counter
        statement (admission plans its group's small publishes together)."""
        now = clock.now()
        for p in pages:
            mark_unsendable(p.rows, expired=p.expired, configured=p.configured, app_name=p.app_name)
            if p.policy is not None and p.policy.active:
                await apply_policy(conn, self.db.dialect, p.publish_id, p.rows, p.policy, now)
        fresh = await self.insert_planned_many(conn, {p.publish_id: p.rows for p in pages})
        out, moves = [], []
        for p in pages:
            new = fresh.get(p.publish_id, set())
            if p.policy is not None:
                _count_policy(p.rows, new)
            held: dict[tuple[str, float], list[list[str]]] = {}
            per_provider, batches = tally(p.rows, new, p.stats, held)
            moves += [(p.publish_id, provider, counts) for provider, counts in per_provider.items()]
            out.append(batches)
            by_provider: dict[str, dict[float, list[list[str]]]] = {}
            for (provider, release_at), targets in held.items():
                by_provider.setdefault(provider, {})[release_at] = targets
            app_id = p.policy.app_id if p.policy is not None else ""  # only policy holds rows
            for provider, waves in by_provider.items():
                if p.policy is not None and p.policy.dry_run:  # a dry run waits for nobody
                    waves = {now: [t for targets in waves.values() for t in targets]}
                await JobQueue.enqueue_dispatch(
                    conn, app_id, p.publish_id, provider, waves, batch_size=p.batch_size, held=True
                )
        await bump_many(conn, self.db.dialect, moves)
        return out

    async def end_planning(self, conn: AsyncConnection, publish_id: str, stats: PlanStats) -> str | None:
        """After the last page (the publish is ``dispatching`` with planning done): a publish
        with nothing left to send is closed, or failed when no targeted provider has credentials.
        Returns the status it closed with, if it did."""
        no_credentials = stats.no_credentials == stats.planned
        if stats.planned > 0 and stats.dispatched == 0 and no_credentials:
            await self.fail_in(conn, publish_id, "no_credentials", NO_CREDENTIALS)
            return "failed"
        return await self.close_if_done(conn, publish_id)
