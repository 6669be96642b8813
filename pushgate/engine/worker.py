"""The engine: worker tasks that claim jobs from the durable queue and run them.

Workers sleep on an event that admission sets after its commit (a one-device publish reaches
the provider within milliseconds), and otherwise poll at ``engine.poll_interval`` so jobs
enqueued by other processes and due retries are picked up too.

Besides the ``engine.concurrency`` workers, which take the apps' jobs in turn, one more worker
takes, while all of them are busy, only jobs of apps that have nothing running in this process:
while one app's backlog keeps every worker busy, an app that was idle is served at once instead
of after the batch a worker has in hand (as a fair queue serves new flows first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pushgate.config import Settings
from pushgate.domain import clock
from pushgate.domain.jobs import DispatchPayload, JobKind, Payload, PlanPayload, Unreadable, group_key
from pushgate.domain.quarantine import BreakerRules
from pushgate.domain.status import OPEN_PUBLISH
from pushgate.engine.dispatcher import Dispatcher, Guards, deadline_of
from pushgate.engine.grouped import GroupDispatch
from pushgate.engine.health import HealthMonitor
from pushgate.engine.housekeeping import Housekeeping, seen_after
from pushgate.engine.leases import Heartbeat
from pushgate.engine.limits import RateLimits
from pushgate.engine.planner import PlanContext, Planner
from pushgate.engine.providers import ProviderPool
from pushgate.engine.quarantine import Quarantine
from pushgate.engine.realtime_stage import RealtimeStage, mode_of
from pushgate.engine.retention import Retention
from pushgate.engine.webhooks import WebhookSender
from pushgate.providers.transport import Transport
from pushgate.realtime.delivery import RealtimeDelivery
from pushgate.store.apps import AppStore
from pushgate.store.credentials import credential_store
from pushgate.store.db import Database
from pushgate.store.devices import DeviceStore
from pushgate.store.faults import StorageUnavailable
from pushgate.store.health import ProviderHealthStore
from pushgate.store.policies import PolicyStore
from pushgate.store.publishes import Publish, PublishStore
from pushgate.store.publishes.policy import PolicyLoader
from pushgate.store.queue import Job, JobQueue, LeaseLost
from pushgate.store.webhooks import WebhookStore

log = logging.getLogger("pushgate.engine")

#: A job claimed this many times keeps killing its worker (or the worker keeps dying with it):
#: record it as failed rather than retry it forever.
MAX_CLAIMS = 8

P = TypeVar("P", PlanPayload, DispatchPayload)


@dataclass(frozen=True, slots=True)
class Handler(Generic[P]):
    """How the worker runs one job kind: ``run`` it, or ``give_up`` on it when it keeps
    crashing (claimed more than ``MAX_CLAIMS`` times), so its publish can still finish."""

    payload: type[P]
    run: Callable[[Job[P], Publish | None, str], Awaitable[None]]
    give_up: Callable[[Job[P], Publish], Awaitable[None]]


class Engine:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        transport: Transport,
        *,
        policy_loader: PolicyLoader | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.queue = JobQueue(db)
        self.apps = AppStore(db)
        self.publishes = PublishStore(db)
        self.devices = DeviceStore(db)
        self.pool = ProviderPool(settings, transport, credential_store(settings.secret_key, db))
        self.planner = Planner(db, self.publishes, self.notify)
        #: A realtime publish's first stage (its sessions); ``delivery`` is set by ``serve``
        #: (its gateway), else :meth:`start` makes one that reaches sessions through Redis.
        self.realtime_stage = RealtimeStage(db, self.publishes, settings.engine.lease_seconds)
        self._own_delivery: RealtimeDelivery | None = None
        #: Each publish's policy, read when its plan job runs.
        self.policy = policy_loader or PolicyLoader(db, PolicyStore(db, settings.policy_config))
        self.health_store = ProviderHealthStore(db)
        q = settings.quarantine
        self.health = HealthMonitor(self.health_store, settings.health)
        self.guards = Guards(
            quarantine=Quarantine(
                self.health_store,
                BreakerRules(
                    q.failure_threshold, q.cooldown, q.max_cooldown, q.credential_cooldown, q.probe_timeout
                ),
            ),
            health=self.health,
            limits=RateLimits(settings, self.health.throttled),
            store=self.health_store,
        )
        self.dispatcher = Dispatcher(db, self.publishes, self.pool, settings, self.guards)
        self.grouped = GroupDispatch(self.dispatcher)
        self.retention = Retention(settings, db)
        #: Posts webhook events (engine/webhooks.py) through the providers' transport.
        hooks = settings.webhooks
        self.webhooks = WebhookSender(WebhookStore(db, hooks.settle_seconds), transport, hooks)
        # jobs.lease_owner is VARCHAR(64): a long host name (cloud FQDNs reach 63) must not
        # overflow it, or every claim fails on PostgreSQL. 40 + pid (<= 7) + nonce (8) + 2 <= 64.
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.heartbeat = Heartbeat(self.queue, self.owner, settings.engine.lease_seconds)
        self._wake = asyncio.Event()
        self._idle_wake = asyncio.Event()
        #: Jobs being run by this process's workers (``run_job`` calls in progress).
        self._running = 0
        self._stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: The lease heartbeat outlives the workers' stop signal: jobs finishing during the
        #: grace period keep their leases until they end.
        self._beat_stop = asyncio.Event()
        self._beat: asyncio.Task[None] | None = None
        self._stopping = False
        self._app_names: dict[str, str] = {}
        #: Job kind → its handler; a new kind is one entry here and one payload Struct.
        self.handlers: dict[str, Handler[Any]] = {
            JobKind.PLAN: Handler(PlanPayload, self._plan, self._give_up_plan),
            JobKind.DISPATCH: Handler(DispatchPayload, self.dispatcher.run, self.dispatcher.give_up),
        }

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._stopping and not all(t.done() for t in self._tasks)

    def notify(self) -> None:
        """New work was committed: wake idle workers now instead of at their next poll."""
        self._wake.set()
        self._idle_wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._stop_event.clear()
        self._beat_stop.clear()
        self._beat = asyncio.create_task(self.heartbeat.run(self._beat_stop), name="pushgate-leases")
        if self.realtime_stage.delivery is None:  # a process without a gateway (pushgate worker)
            self._own_delivery = RealtimeDelivery(None, None, self.settings.redis_url)
            self.realtime_stage.delivery = self._own_delivery
        for n in range(self.settings.engine.concurrency):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"pushgate-worker-{n}"))
        self._tasks.append(asyncio.create_task(self._idle_apps_loop(), name="pushgate-worker-idle-apps"))
        chores = Housekeeping(self.settings, self.db, self.publishes, self.health_store, self._stop_event)
        if seen_after(self.settings) is not None and self.settings.devices.prune_inactive:
            self._tasks.append(asyncio.create_task(chores.prune_loop(), name="pushgate-prune"))
        self._tasks.append(asyncio.create_task(chores.sweep_loop(), name="pushgate-sweep"))
        self._tasks.append(
            asyncio.create_task(self.retention.run(self._stop_event), name="pushgate-retention")
        )
        self._tasks.append(asyncio.create_task(self.webhooks.run(self._stop_event), name="pushgate-webhooks"))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let in-flight jobs finish for up to ``grace`` seconds, give back the rest."""
        self._stopping = True
        self._wake.set()
        self._idle_wake.set()
        self._stop_event.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        self._beat_stop.set()
        if self._beat is not None:
            await asyncio.gather(self._beat, return_exceptions=True)
            self._beat = None
        try:
            await self.queue.release(self.owner)
        except Exception:  # the database may already be gone at shutdown
            log.exception("could not release leases")
        await self.pool.aclose()
        if self._own_delivery is not None:
            await self._own_delivery.stop()
            self.realtime_stage.delivery = self._own_delivery = None

    async def _app_name(self, app_id: str) -> str:
        name = self._app_names.get(app_id)
        if name is None:
            app = await self.apps.get(app_id)
            name = app.name if app else app_id
            self._app_names[app_id] = name
        return name

    async def _loop(self) -> None:
        e = self.settings.engine
        storage = self.dispatcher.recorder.storage
        refused = 0  # claims in a row the database refused: the pause grows with them
        while not self._stopping:
            try:
                # No claim while outcomes wait for storage or the database refuses writes.
                await storage.wait_writable()
                jobs = await self.queue.claim(self.owner, 1, e.lease_seconds)
                refused = 0
            except StorageUnavailable as exc:
                storage.report(exc, "claiming jobs")
                await asyncio.sleep(storage.pause(refused))
                refused += 1
                continue
            except Exception:
                log.exception("claiming jobs failed; retrying")
                await asyncio.sleep(e.poll_interval)
                continue
            if not jobs:
                self._wake.clear()
                timeout = e.poll_interval
                try:
                    due = await self.queue.next_due()
                except Exception:
                    due = None
                if due is not None:
                    timeout = max(0.01, min(timeout, due - clock.now()))
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            # Another job may be waiting: let a sibling worker claim it while this one works.
            self._wake.set()
            await self._run_claimed(jobs)
            # On SQLite a job that needs no network (deferred, expired, already final) never
            # yields: without this, a worker draining thousands of them froze the process.
            await asyncio.sleep(0)

    async def _run_claimed(self, jobs: list[Job[Payload | Unreadable]], *, grouping: bool = True) -> None:
        """Run what a worker claimed; a failure is logged and the job's lease left to expire, so
        it is claimed again and nothing is lost. A small dispatch job brings its company
        (:meth:`_run_group`, unless ``grouping`` is off); what the group hands back runs here,
        one after another, alone, its lease renewed from the moment it was claimed."""
        # (job, whether it may lead a group): what a group hands back runs alone, never again
        # in a group (it would be handed back again, for ever).
        queue: list[tuple[Job[Any], bool]] = [(job, grouping) for job in jobs]
        waiting: dict[int, contextlib.ExitStack] = {}  # handed back: held until they have run
        try:
            while queue:
                job, may_group = queue.pop(0)
                leads = may_group and self._groups(job)
                try:
                    if leads:
                        alone = await self._run_group(job)
                        for j in alone:
                            waiting[j.id] = stack = contextlib.ExitStack()
                            stack.enter_context(self.heartbeat.hold(j))
                        queue[:0] = [(j, False) for j in alone]
                    else:
                        await self.run_job(job)
                except asyncio.CancelledError:
                    raise
                except StorageUnavailable as exc:
                    # Nothing of it was sent unrecorded (outcomes wait in the recorder); the lease
                    # expires and the job is claimed again once storage is back.
                    self.dispatcher.recorder.storage.report(exc, f"running job {job.id} ({job.kind})")
                except Exception:
                    log.exception("job %s (%s) of publish %s failed", job.id, job.kind, job.publish_id)
                finally:
                    held = None if leads else waiting.pop(job.id, None)
                    if held is not None:  # it has run: its own hold (run_job's) was the one that counted
                        held.close()
        finally:
            for held in waiting.values():
                held.close()

    def _groups(self, job: Job[Payload | Unreadable]) -> bool:
        """Whether ``job`` is claimed with company: a small dispatch job on its first claim
        (one claimed again after a crash runs alone, so a job that kills its worker cannot take
        others down with it twice)."""
        return (
            self.settings.engine.dispatch_group > 1
            and job.grouped
            and isinstance(job.payload, DispatchPayload)
            and group_key(job.payload) is not None
            and job.claims == 1
            and not job.progress
        )

    async def _run_group(self, first: Job[Payload | Unreadable]) -> list[Job[Any]]:
        """Claim up to ``engine.dispatch_group - 1`` more small jobs of ``first``'s app and
        provider and send them together (``engine/grouped.py``); returns the jobs to run alone."""
        e = self.settings.engine
        try:
            company = await self.queue.claim_group(self.owner, first, e.dispatch_group - 1, e.lease_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # the group is an optimisation: without company, ``first`` goes alone
            log.exception("claiming company for job %s failed; sending it alone", first.id)
            company = []
        group = [
            j.typed(DispatchPayload) for j in (first, *company) if isinstance(j.payload, DispatchPayload)
        ]
        misfits = [j for j in company if not isinstance(j.payload, DispatchPayload)]
        self._running += 1
        try:
            with contextlib.ExitStack() as held:
                for j in group:
                    held.enter_context(self.heartbeat.hold(j))
                alone = await self.grouped.run(group, await self._app_name(first.app_id))
        finally:
            self._running -= 1
        return [*alone, *misfits]  # typed per kind; run_job dispatches on the kind again

    async def _idle_apps_loop(self) -> None:
        """The worker kept for idle apps: while every other worker is busy, it claims jobs of apps
        with no job running in this process (a free worker needs no help, so an app alone never
        runs more than ``engine.concurrency`` jobs at once). It claims no company: a group it
        had to hand back would keep it from the next idle app for a whole group's length.
        Otherwise it sleeps until a local commit wakes it or ``engine.poll_interval`` passes
        (never sooner: the due jobs it wakes for may all be of busy apps)."""
        e = self.settings.engine
        storage = self.dispatcher.recorder.storage
        failing = False
        while not self._stopping:
            self._idle_wake.clear()
            try:
                jobs = []
                if self._running >= e.concurrency:
                    # Like the other workers: no claim while storage refuses writes.
                    await storage.wait_writable()
                    jobs = await self.queue.claim(self.owner, 1, e.lease_seconds, self.heartbeat.running_apps)
                failing = False
            except StorageUnavailable as exc:
                storage.report(exc, "claiming jobs for idle apps")
                jobs = []
            except Exception:
                if not failing:  # once, not every poll, while the database is failing
                    log.exception("claiming for idle apps failed; retrying every %g s", e.poll_interval)
                failing, jobs = True, []
            await self._run_claimed(jobs, grouping=False)
            if jobs:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle_wake.wait(), e.poll_interval)

    def find_handler(self, job: Job[Payload | Unreadable]) -> Handler[Any] | None:
        """The handler for the job's kind, or None when the job cannot run at all (unknown kind,
        unreadable payload): it would fail the same way on every claim."""
        handler = self.handlers.get(job.kind)
        if handler is None or not isinstance(job.payload, handler.payload):
            return None
        return handler

    async def run_job(self, job: Job[Payload | Unreadable]) -> None:
        """Run one claimed job, its lease renewed while it runs (:class:`Heartbeat`)."""
        self._running += 1
        try:
            with self.heartbeat.hold(job):
                await self._run_job(job)
        finally:
            self._running -= 1

    async def _run_job(self, job: Job[Payload | Unreadable]) -> None:
        handler = self.find_handler(job)
        if handler is None:
            # It would fail the same way on every claim. Dropping it alone would leave its publish
            # open for ever (a plan never run, deliveries pending): fail the publish with it, in
            # the same transaction, so the loss is visible as internal_error and nothing waits.
            why = job.payload.error if isinstance(job.payload, Unreadable) else "no handler"
            log.error("cannot run job %s (%s): %s; failing its publish", job.id, job.kind, why)
            message = f"a {job.kind} job of this publish could not be run ({why}); see the server log"
            async with self.db.write() as conn:
                await self.publishes.fail_in(conn, job.publish_id, "internal_error", message)
                await JobQueue.delete(conn, job.id)
            return
        pub = await self.publishes.get(None, job.publish_id, with_counts=False)
        app_name = await self._app_name(job.app_id)
        if (
            job.claims > MAX_CLAIMS
            and pub is not None
            and job.claims - await self.queue.deferrals(job.id) > MAX_CLAIMS
        ):
            log.error(
                "job %s (%s) of publish %s was claimed %d times; failing it",
                job.id,
                job.kind,
                pub.id,
                job.claims,
            )
            await handler.give_up(job.typed(handler.payload), pub)
            return
        await handler.run(job.typed(handler.payload), pub, app_name)

    async def _give_up_plan(self, job: Job[PlanPayload], pub: Publish) -> None:
        await self.publishes.fail(pub.id, "internal_error", "planning failed repeatedly; see the server log")
        async with self.db.write() as conn:
            await JobQueue.delete(conn, job.id)

    async def _plan(self, job: Job[PlanPayload], pub: Publish | None, app_name: str) -> None:
        if pub is None or pub.status not in OPEN_PUBLISH:
            async with self.db.write() as conn:
                await JobQueue.delete(conn, job.id)
            return
        e = self.settings.engine
        rt = job.payload.realtime
        if rt is None and mode_of(pub.request) is not None:
            try:
                if not await self.realtime_stage.run(job, pub):
                    self.notify()  # ``only``: a publish closed, or its job gone
                    return
            except LeaseLost:
                log.warning("plan job %s was re-claimed while reaching its sessions", job.id)
                return
            rt = job.payload.realtime
        # ``realtime: first`` with sessions reached: the reached users wait for the ack timeout.
        first_pass = rt if rt is not None and rt.stage == 1 else None
        ctx = PlanContext(
            app_name=app_name,
            configured=await self.pool.available(job.app_id, app_name),
            batch_size=e.batch_size,
            page_size=e.plan_page_size,
            lease_seconds=e.lease_seconds,
            seen_after=seen_after(self.settings),
            # A first pass gives its job back to the queue: no batch of it is run under its hold.
            owner=None if first_pass else self.owner,
            policy=await self.policy.for_request(job.app_id, pub.request, deadline_of(pub)),
            hold_back=frozenset(first_pass.users if first_pass else ()),
            next_pass_at=first_pass.at + self.settings.realtime.ack_timeout if first_pass else None,
        )
        try:
            inline = await self.planner.run(job, pub, ctx)
        except LeaseLost:
            log.warning("plan job %s was re-claimed while planning; this page was rolled back", job.id)
            return
        self.notify()
        if inline is not None:
            # The publish's last batch, claimed by this worker in planning's last commit.
            with self.heartbeat.hold(inline):
                await self.dispatcher.run(inline, pub, app_name)
