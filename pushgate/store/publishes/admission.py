"""Admission: the publish row and its ``plan`` job, written in one transaction (group-committed).

Nothing is acknowledged before its commit, so an accepted publish survives a crash right after
the answer; the idempotency key is checked here. A small publish (a few devices, users or
tokens: :class:`InlinePlan`) is planned in that same transaction instead: its delivery records,
counters and dispatch jobs are written through the planner's own store functions
(:class:`~pushgate.store.publishes.planning.Planning`) and no plan job is queued.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain import clock
from pushgate.domain.ids import new_id
from pushgate.domain.jobs import PlanPayload, PlanStats, dispatch_batches
from pushgate.domain.status import COUNTERS, PublishStatus
from pushgate.store.audience import SmallAudience, resolve_small
from pushgate.store.db import Database
from pushgate.store.publishes.client_ids import IdConflict, decide
from pushgate.store.publishes.model import Publish, PublishTags, publish_from_row
from pushgate.store.publishes.planning import PlannedPage, Planning
from pushgate.store.publishes.policy import PagePolicy
from pushgate.store.queue import JobQueue, NewJob
from pushgate.store.schema import publishes

_INSERT_PUBLISH = sa.insert(publishes)
_RELEASE_KEY = (
    sa.update(publishes).where(publishes.c.id == sa.bindparam("old_id")).values(idempotency_key=None)
)
#: A key given after the client id: stored on its publish if it has none yet.
_ATTACH_KEY = (
    sa.update(publishes)
    .where(publishes.c.id == sa.bindparam("pid"), publishes.c.idempotency_key.is_(None))
    .values(idempotency_key=sa.bindparam("key"))
)


@dataclass(frozen=True, slots=True)
class InlinePlan:
    """What planning a publish at admission needs, as the planner would have it."""

    app_name: str
    #: Providers the app has credentials for (the others' records fail ``no_credentials``).
    configured: frozenset[str]
    #: Targets per dispatch job (``engine.batch_size``).
    batch_size: int
    #: Planned here only if its recipients resolve to at most this many rows; else the planner.
    max_rows: int
    #: Devices last seen before this epoch time are skipped (``devices.max_inactive_days``).
    seen_after: float | None = None
    #: The publish's policy (None: every row goes now).
    policy: PagePolicy | None = None


_Item = tuple[Publish, str | None, asyncio.Future[None], InlinePlan | None]


class _GroupCommit:
    """Admission's group commit: publishes admitted concurrently are written in one transaction.

    A request appends its publish and waits; one flusher task writes everything queued so far
    (publish rows, their ``plan`` jobs, released idempotency keys) in a single transaction and
    then answers every waiter. Whatever arrives while a flush runs goes into the next one. So
    under load one commit serves many requests, and an idle server commits at once. A request is
    answered only after its own rows committed: nothing acknowledged can be lost.

    If a group fails on a constraint (two requests racing for one idempotency key), each member is
    retried in a transaction of its own, so only the loser sees the ``IntegrityError``.

    A member with an :class:`InlinePlan` whose recipients resolve within its bound is planned in
    the group's transaction (records, counters, dispatch jobs; the group's jobs are one insert);
    the others get their ``plan`` job.
    """

    #: Publishes per transaction at most (bounds the statement size and the commit's latency).
    MAX_GROUP = 256

    def __init__(self, store: Admission) -> None:
        self.db = store.db
        self.store = store
        self._queue: list[_Item] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, pub: Publish, release_key_of: str | None, plan: InlinePlan | None) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((pub, release_key_of, fut, plan))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="pushgate-admission-commit")
        await asyncio.shield(fut)

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self.MAX_GROUP], self._queue[self.MAX_GROUP :]
            try:
                await self._write([(p, old, plan) for p, old, _, plan in group])
            except IntegrityError:
                for item in group:
                    _reset(item[0])
                    try:
                        await self._write([(item[0], item[1], item[3])])
                    except Exception as exc:  # handed to the waiting request
                        _fail(item[2], exc)
                    else:
                        _done(item[2])
            except Exception as exc:  # handed to every waiting request
                for item in group:
                    _fail(item[2], exc)
            except BaseException:  # cancelled (shutdown): nobody may wait forever
                for item in group + self._queue:
                    _fail(item[2], RuntimeError("admission stopped before its commit"))
                self._queue = []
                raise
            else:
                for item in group:
                    _done(item[2])

    async def write_together(self, group: Sequence[tuple[Publish, str | None, InlinePlan | None]]) -> None:
        """Write a batch's publishes in one transaction of their own, never split by
        :attr:`MAX_GROUP`: a batch request is already a group, and its items commit together
        (the small ones planned in it, as single publishes are)."""
        await self._write(group)

    async def _write(self, group: Sequence[tuple[Publish, str | None, InlinePlan | None]]) -> None:
        async with self.db.write() as conn:
            # In id order, as every transaction that locks several publish rows takes them (a
            # group's outcome transaction holds its publishes' rows while it records).
            released = [{"old_id": old} for old in sorted(old for _, old, _ in group if old is not None)]
            if released:
                await conn.execute(_RELEASE_KEY, released)
            now = clock.now()
            planned: dict[str, list[dict[str, Any]]] = {}
            # Never a scheduled one: it is planned when its time comes, not at admission.
            small = [(p, plan) for p, _, plan in group if plan is not None and not _scheduled(p)]
            wants = [
                SmallAudience(p.app_id, p.request.get("recipients", []), plan.seen_after, plan.max_rows)
                for p, plan in small
            ]
            for (p, _), rows in zip(small, await resolve_small(conn, self.db.dialect, wants), strict=True):
                if rows == []:
                    # Nobody to reach: written completed, as the planner's close would leave it
                    # (no records, no counters), without its lookups (a quarter of the API's
                    # CPU per publish to an empty channel).
                    p.status, p.started_at, p.planning_done = PublishStatus.COMPLETED.value, now, True
                    p.completed_at = now
                elif rows is not None:
                    planned[p.id] = rows
                    # Planned in this commit: as the planner's last page leaves it.
                    p.status, p.started_at, p.planning_done = PublishStatus.DISPATCHING.value, now, True
            await conn.execute(
                _INSERT_PUBLISH,
                [
                    {
                        "id": p.id,
                        "app_id": p.app_id,
                        "status": p.status,
                        "idempotency_key": p.idempotency_key,
                        "request": json.dumps(p.request, separators=(",", ":")),
                        "expire_at": p.expire_at,
                        "planning_done": p.planning_done,
                        "created_at": p.created_at,
                        "started_at": p.started_at,
                        "completed_at": p.completed_at,
                        "send_at": p.send_at,
                        "campaign": p.campaign,
                        "labels": json.dumps(p.labels, separators=(",", ":")) if p.labels else None,
                        "client_id": p.client_id,
                        "dry_run": p.dry_run,
                    }
                    for p, _, _ in group
                ],
            )
            # A scheduled publish's plan job waits in the queue until its ``send_at``.
            jobs = [
                NewJob(p.app_id, p.id, PlanPayload(), run_at=p.send_at if _scheduled(p) else None)
                for p, _, _ in group
                if not p.planning_done
            ]
            jobs += await self._plan(
                conn, [(p, plan) for p, _, plan in group if p.id in planned and plan], planned, now
            )
            await JobQueue.enqueue(conn, jobs)

    async def _plan(
        self,
        conn: AsyncConnection,
        members: list[tuple[Publish, InlinePlan]],
        planned: dict[str, list[dict[str, Any]]],
        now: float,
    ) -> list[NewJob]:
        """Plan the members in this transaction, as the planner's single, last page would:
        records and counters now (one statement each for the whole group); returns their
        dispatch jobs (the caller enqueues the group's in one statement). A publish with nothing
        to send ends here (closed, or failed without credentials)."""
        if not members:
            return []
        pages = [
            PlannedPage(
                p.id,
                planned[p.id],
                PlanStats(),
                p.expire_at is not None and now >= p.expire_at,
                plan.configured,
                plan.app_name,
                plan.policy,
                plan.batch_size,
            )
            for p, plan in members
        ]
        jobs: list[NewJob] = []
        for (p, plan), page, batches in zip(
            members, pages, await self.store.plan_pages(conn, pages), strict=True
        ):
            if page.stats.dispatched == 0:
                ended = await self.store.end_planning(conn, p.id, page.stats)
                if ended is not None:
                    p.status, p.completed_at = ended, now
            jobs += [
                # A dry run's jobs run alone: the dispatcher records them (engine/dryrun.py).
                NewJob(p.app_id, p.id, payload, grouped=not p.dry_run)
                for provider, targets in batches.items()
                for payload in dispatch_batches(provider, targets, size=plan.batch_size)
            ]
        return jobs


class _KeyTaken(Exception):
    """A publish got an idempotency key while its key was being stored (rolled back)."""


def _scheduled(pub: Publish) -> bool:
    return pub.status == PublishStatus.SCHEDULED


def _reset(pub: Publish) -> None:
    """Back to unplanned: a group that failed is retried one publish at a time (a scheduled
    publish was never planned: it stays as it is)."""
    if _scheduled(pub):
        return
    pub.status, pub.started_at, pub.completed_at, pub.planning_done = (
        PublishStatus.ACCEPTED.value,
        None,
        None,
        False,
    )


def _done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _fail(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


@dataclass(frozen=True, slots=True)
class NewPublish:
    """One publish of a batch, validated: what :meth:`Admission.admit` takes as arguments."""

    request: dict[str, Any]
    idempotency_key: str | None
    expire_at: float | None
    #: How admission may plan it (a small publish), as for a single publish.
    plan: InlinePlan | None = None
    #: Its ``send_at`` (epoch seconds), as for :meth:`Admission.admit`.
    send_at: float | None = None
    #: Its campaign, labels, client id and dry-run flag, as for :meth:`Admission.admit`.
    tags: PublishTags = field(default_factory=PublishTags)


def _new_publish(
    app_id: str,
    request: dict[str, Any],
    key: str | None,
    expire_at: float | None,
    send_at: float | None,
    tags: PublishTags,
) -> Publish:
    """A publish to write: ``scheduled`` when ``send_at`` is still ahead (a past or present one
    means now, and is recorded all the same)."""
    now = clock.now()
    return Publish(
        id=new_id("pub"),
        app_id=app_id,
        status=(
            PublishStatus.SCHEDULED.value
            if send_at is not None and send_at > now
            else PublishStatus.ACCEPTED.value
        ),
        request=request,
        idempotency_key=key,
        expire_at=expire_at,
        planning_done=False,
        error_code=None,
        error_message=None,
        created_at=now,
        started_at=None,
        completed_at=None,
        counts=dict.fromkeys(COUNTERS, 0),
        send_at=send_at,
        campaign=tags.campaign,
        labels=tags.labels,
        client_id=tags.client_id,
        dry_run=tags.dry_run,
    )


class Admission(Planning):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._admissions = _GroupCommit(self)

    async def admit(
        self,
        app_id: str,
        request: dict[str, Any],
        *,
        idempotency_key: str | None,
        expire_at: float | None,
        window_seconds: float,
        plan: InlinePlan | None = None,
        send_at: float | None = None,
        tags: PublishTags | None = None,
    ) -> tuple[Publish, bool]:
        """Write the publish and its plan job in one transaction; with ``plan``, a publish whose
        recipients resolve to at most ``plan.max_rows`` rows is planned in it instead.

        ``send_at`` ahead of the clock: the publish is ``scheduled`` and its plan job runs then
        (never planned here, whatever ``plan`` says); a past one means now.

        Returns ``(publish, created)``; with a known idempotency key inside the window, or a
        known client id (``tags.client_id``, no window), the first publish comes back and nothing
        new is written (:class:`IdConflict` when the two name different publishes). Concurrent
        admissions share one transaction (:class:`_GroupCommit`); each returns only after that
        commit; the loser of a race for a key or client id gets the winner's publish.
        """
        tags = tags or PublishTags()
        for _ in range(3):
            [found] = decide(
                await self._known(app_id, [(idempotency_key, tags.client_id)]),
                [(idempotency_key, tags.client_id)],
                clock.now() - window_seconds,
                lambda: _new_publish(app_id, request, idempotency_key, expire_at, send_at, tags),
            )
            if isinstance(found, IdConflict):
                raise found
            pub, created, old, attach = found
            if not created:
                try:
                    if attach is not None and not await self._attach_keys([(pub, old, attach)]):
                        continue  # another request gave it a key meanwhile: decide again
                except IntegrityError:
                    continue  # a concurrent request took the key: decide again
                return pub, False
            try:
                await self._admissions.submit(pub, old, plan)
            except IntegrityError:
                continue  # a concurrent request with the same key or id won: return its publish
            return pub, True
        raise RuntimeError("idempotency key contention")

    async def admit_many(
        self, app_id: str, items: Sequence[NewPublish], *, window_seconds: float
    ) -> list[tuple[Publish, bool] | IdConflict]:
        """Admit a batch's publishes in one transaction; ``(publish, created)`` per item, in order
        (an :class:`IdConflict` for an item whose key and client id name different publishes).

        Idempotency keys and client ids behave as for :meth:`admit`, each item in turn: a known
        one gives back its publish, and one repeated inside the batch gives the later item the
        earlier item's publish (what a retried single publish would get). If a concurrent
        request takes one of them first, the whole batch is looked up and written again.
        """
        for _ in range(3):
            pairs = [(i.idempotency_key, i.tags.client_id) for i in items]
            makers = [
                lambda i=i: _new_publish(app_id, i.request, i.idempotency_key, i.expire_at, i.send_at, i.tags)
                for i in items
            ]
            decided = decide(await self._known(app_id, pairs), pairs, clock.now() - window_seconds, *makers)
            new: list[tuple[Publish, str | None, InlinePlan | None]] = []
            attach: list[tuple[Publish, str | None, str]] = []
            for item, d in zip(items, decided, strict=True):
                if not isinstance(d, IdConflict) and d[1]:
                    new.append((d[0], d[2], item.plan))
                elif not isinstance(d, IdConflict) and d[3] is not None:
                    attach.append((d[0], d[2], d[3]))
            try:
                if attach and not await self._attach_keys(attach):
                    continue  # another request gave one of them a key meanwhile
                if new:
                    await self._admissions.write_together(new)
            except IntegrityError:
                continue  # a concurrent request took one of the keys: look them up again
            return [d if isinstance(d, IdConflict) else (d[0], d[1]) for d in decided]
        raise RuntimeError("idempotency key contention")

    async def _attach_keys(self, items: Sequence[tuple[Publish, str | None, str]]) -> bool:
        """Store each key on its (client id's) publish, releasing a lapsed holder's first, in one
        transaction; False (nothing written) if one of them got a key meanwhile. A key taken
        concurrently by another publish raises ``IntegrityError`` (the caller decides again)."""
        try:
            async with self.db.write() as conn:
                released = sorted({old for _, old, _ in items if old is not None})
                if released:
                    await conn.execute(_RELEASE_KEY, [{"old_id": old} for old in released])
                for pub, _, key in sorted(items, key=lambda i: i[0].id):
                    if (await conn.execute(_ATTACH_KEY, {"pid": pub.id, "key": key})).rowcount != 1:
                        raise _KeyTaken  # rolls the transaction back
        except _KeyTaken:
            return False
        for pub, _, key in items:
            pub.idempotency_key = key
        return True

    async def _known(
        self, app_id: str, pairs: Sequence[tuple[str | None, str | None]]
    ) -> tuple[dict[str, Publish], dict[str, Publish]]:
        """The app's publishes with these idempotency keys and client ids, in one read (both
        are unique per app: each condition is one index lookup)."""
        keys = sorted({k for k, _ in pairs if k is not None})
        cids = sorted({c for _, c in pairs if c is not None})
        if not keys and not cids:
            return {}, {}
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(publishes).where(
                        publishes.c.app_id == app_id,
                        sa.or_(publishes.c.idempotency_key.in_(keys), publishes.c.client_id.in_(cids)),
                    )
                )
            ).all()
        pubs = [publish_from_row(r) for r in rows]
        return (
            {p.idempotency_key: p for p in pubs if p.idempotency_key is not None},
            {p.client_id: p for p in pubs if p.client_id is not None},
        )
