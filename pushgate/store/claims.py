"""The fair claim: which due jobs a worker takes next, the apps taking turns.

With one global ``ORDER BY run_at`` a tenant's backlog of 200,000 deliveries (400 batches)
queued before another tenant's one-device publish made that publish wait until every earlier
batch was claimed. Here each claim takes the oldest due job of the next app in rotation, in one
statement whose cost does not grow with any app's backlog (an index probe or two per app with
jobs, on ``ix_jobs_app_run_at``), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.sql.dml import ReturningDelete

from pushgate.store.dialect import lock_rows, lock_skip_locked
from pushgate.store.schema import apps, jobs


def queued_apps() -> sa.CTE:
    """The distinct ``app_id`` of the jobs table (and a last NULL row), by a loose index scan:
    ``min(app_id) WHERE app_id > previous`` is one probe of ``ix_jobs_app_run_at`` per app, so
    however many jobs an app has queued, it costs one step here. (A recursive CTE: both
    databases run it; neither skips through an index by itself.)"""
    step = jobs.alias("step")
    queued = sa.select(sa.func.min(jobs.c.app_id).label("app_id")).cte("queued", recursive=True)
    prev = queued.alias("prev")
    return queued.union_all(
        sa.select(
            sa.select(sa.func.min(step.c.app_id)).where(step.c.app_id > prev.c.app_id).scalar_subquery()
        ).where(prev.c.app_id.is_not(None))
    )


@lru_cache(maxsize=1)
def apps_statement() -> sa.Select[tuple[str, str | None]]:
    """The apps with jobs and their names (None for an app no longer in ``apps``)."""
    queued = queued_apps()
    return (
        sa.select(queued.c.app_id, apps.c.name)
        .select_from(queued.outerjoin(apps, apps.c.id == queued.c.app_id))
        .where(queued.c.app_id.is_not(None))
    )


@lru_cache(maxsize=4)
def claim_statement(dialect: str) -> sa.Update:
    """The fair claim: the apps' due jobs are taken in turn, not in one global ``run_at`` order.

    One statement, as cheap with 200,000 jobs of one app as with ten (docs/performance.md):

    1. ``queued``: the distinct ``app_id`` of the jobs table (:func:`queued_apps`).
    2. ``picks``: for each app its oldest due, unleased job (rank 0), then the next one after
       that (rank 1), … up to ``:lim`` per app: each an index range scan that stops at its first
       row (on PostgreSQL ``FOR UPDATE SKIP LOCKED``, so concurrent claimers take each app's
       next job instead of waiting).
    3. Order the picks by rank, then by app in rotation (the apps after ``:after``, the app
       this process served last, first; then the others), and take ``:lim``. Apps in
       ``:skip`` are left out (the worker kept for idle apps skips those already running).

    So with ``:lim = 1`` successive claims serve app A, app B, app C, app A, …, each taking that
    app's oldest due job: an app with 200,000 jobs waits its turn like an app with one, and a
    single-device publish of another app is claimed by the next free worker.
    """
    now: sa.BindParameter[float] = sa.bindparam("now")
    after: sa.BindParameter[str] = sa.bindparam("after")
    lim: sa.BindParameter[int] = sa.bindparam("lim")
    queued = queued_apps()
    due = jobs.alias("due")

    def oldest_due(app_id: sa.ColumnElement[str], *after: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
        return lock_skip_locked(
            dialect,
            sa.select(due.c.id)
            .where(
                due.c.app_id == app_id,
                due.c.run_at <= now,
                sa.or_(due.c.lease_until.is_(None), due.c.lease_until < now),
                *after,
            )
            # (run_at, id): only ix_jobs_app_run_at gives this order, so PostgreSQL's planner
            # does not walk ix_jobs_run_at through another app's backlog instead.
            .order_by(due.c.run_at, due.c.id)
            .limit(1),
        ).scalar_subquery()

    picks = (
        sa.select(queued.c.app_id, sa.literal(0).label("r"), oldest_due(queued.c.app_id).label("id"))
        .where(queued.c.app_id.is_not(None), queued.c.app_id.not_in(sa.bindparam("skip", expanding=True)))
        .cte("picks", recursive=True)
    )
    last, last_job = picks.alias("last"), jobs.alias("last_job")
    picks = picks.union_all(
        sa.select(
            last.c.app_id,
            last.c.r + 1,
            oldest_due(
                last.c.app_id,
                # The whole index key, so this is one index condition on ix_jobs_app_run_at.
                sa.tuple_(due.c.app_id, due.c.run_at, due.c.id)
                > sa.tuple_(last_job.c.app_id, last_job.c.run_at, last_job.c.id),
            ),
        )
        .select_from(last.join(last_job, last_job.c.id == last.c.id))
        .where(last.c.r + 1 < lim)
    )
    # 3. Rank first, then the apps in rotation from ``:after``.
    chosen = (
        sa.select(picks.c.id)
        .where(picks.c.id.is_not(None))
        .order_by(picks.c.r, sa.case((picks.c.app_id > after, 0), else_=1), picks.c.app_id)
        .limit(lim)
    )
    return _claiming(chosen)


@lru_cache(maxsize=4)
def group_claim_statement(dialect: str) -> sa.Update:
    """The claim of a group's company: ``:lim`` due jobs of app ``:app`` and group ``:key``
    that no one has claimed yet (a job claimed before, by a worker that died, is claimed alone
    again, so a job that kills its worker cannot take a group down with it), oldest first, one
    range scan of ``ix_jobs_group`` (``SKIP LOCKED`` on PostgreSQL)."""
    now: sa.BindParameter[float] = sa.bindparam("now")
    company = lock_skip_locked(
        dialect,
        sa.select(jobs.c.id)
        .where(
            jobs.c.app_id == sa.bindparam("app"),
            jobs.c.group_key == sa.bindparam("key"),
            jobs.c.run_at <= now,
            sa.or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < now),
            jobs.c.claims == 0,
        )
        .order_by(jobs.c.run_at, jobs.c.id)
        .limit(sa.bindparam("lim")),
    )
    return _claiming(company)


def _claiming(ids: sa.Select[tuple[int]]) -> sa.Update:
    """Lease the jobs ``ids`` selects to ``:owner`` until ``:until`` (one more claim each) and
    return them as :meth:`~pushgate.store.queue.Job.from_row` reads them."""
    return (
        sa.update(jobs)
        .where(jobs.c.id.in_(ids.scalar_subquery()))
        .values(
            lease_until=sa.bindparam("until"), lease_owner=sa.bindparam("owner"), claims=jobs.c.claims + 1
        )
        .returning(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.app_id,
            jobs.c.publish_id,
            jobs.c.payload,
            jobs.c.claims,
            jobs.c.progress,
            jobs.c.group_key,
        )
    )


# ---- statements that lock a worker's own jobs in id order (store/queue.py) ----------------


@lru_cache(maxsize=4)
def renew_statement(dialect: str) -> sa.Update:
    """The heartbeat's renewal of an owner's leases, its rows locked in id order first (on
    PostgreSQL): a group's outcome transaction deletes several of the same rows, in id order
    too, and two multi-row statements that lock in different orders can deadlock."""
    mine = lock_rows(
        dialect,
        sa.select(jobs.c.id)
        .where(
            jobs.c.lease_owner == sa.bindparam("owner"), jobs.c.id.in_(sa.bindparam("ids", expanding=True))
        )
        .order_by(jobs.c.id),
    )
    return (
        sa.update(jobs)
        .where(jobs.c.id.in_(mine.scalar_subquery()))
        .values(lease_until=sa.bindparam("until"))
        .returning(jobs.c.id)
    )


@lru_cache(maxsize=4)
def delete_claimed_many_statement(dialect: str) -> ReturningDelete[tuple[int]]:
    """A group's jobs deleted under their claim number, locked in id order first (see
    :func:`renew_statement`)."""
    ours = lock_rows(
        dialect,
        sa.select(jobs.c.id)
        .where(jobs.c.id.in_(sa.bindparam("ids", expanding=True)), jobs.c.claims == sa.bindparam("cl"))
        .order_by(jobs.c.id),
    )
    return sa.delete(jobs).where(jobs.c.id.in_(ours.scalar_subquery())).returning(jobs.c.id)
