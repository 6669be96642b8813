"""Quarantine per (app, provider): the breaker rules of domain/quarantine.py over shared rows.

Every worker process reads the pair's row at most once per ``CACHE_SECONDS`` (a closed breaker
costs no query per batch) and writes it only when it changes, inside the transaction that
records the answers that changed it (reading it afresh there, so a stale cache never overwrites
a newer row). One process's discovery therefore parks the pair for all of them within a second,
and ``GET /v1/health/providers`` reports it from any process. A deferral is only ever decided on
a fresh read, so a breaker closed elsewhere (a probe, a credential upload) is not waited out.

Web Push and WNS also keep one breaker per push-service origin (``origin_gates``,
``observe_origins``): the origins of a pair that are not clean are read as one map, cached the
same way, so a pair whose origins are all healthy costs a dict lookup per chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.quarantine import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerRules,
    Gate,
    gate,
    observe,
)
from pushgate.metrics import QUARANTINED
from pushgate.store.health import ProviderHealthStore, reschedule_deferred, wake_deferred

log = logging.getLogger("pushgate.engine")

CACHE_SECONDS = 1.0

_CLEAN = Breaker()
_UNHEALTHY = frozenset({Outcome.PROVIDER_TRANSIENT, Outcome.CREDENTIAL})


class Quarantine:
    def __init__(self, store: ProviderHealthStore, rules: BreakerRules) -> None:
        self.store = store
        self.rules = rules
        self._cache: dict[tuple[str, str], tuple[float, Breaker]] = {}
        #: (app, provider) → (read at, origin → breaker of the origins that are not clean)
        self._origins: dict[tuple[str, str], tuple[float, dict[str, Breaker]]] = {}

    async def current(self, app_id: str, provider: str) -> Breaker:
        """The pair's breaker, re-read at most every ``CACHE_SECONDS``."""
        key = (app_id, provider)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        b = await self.store.breaker(app_id, provider)
        self._cache[key] = (now, b)
        return b

    async def open_to_all(self, app_id: str, provider: str, origins: Iterable[str] = ()) -> bool:
        """Whether the pair's breaker, and that of each of ``origins``, lets everything through
        now (the cached states :meth:`gate` and :meth:`origin_gates` start from). Unlike them it
        never takes a probe: a group that may not simply send hands its jobs to the one-job
        path, which takes the probe itself (a probe taken here and not sent would hold the pair
        shut until the probe timed out)."""
        now = time.time()
        if not gate(await self.current(app_id, provider), now).send:
            return False
        wanted = set(origins)
        if not wanted:
            return True
        states = await self.origin_states(app_id, provider)
        return all(o not in states or gate(states[o], now).send for o in wanted)

    async def gate(self, app_id: str, provider: str) -> Gate:
        """Send, probe (this caller won the half-open probe), or defer until a time."""
        now = time.time()
        g = gate(await self.current(app_id, provider), now)
        if g.send:
            return g
        # Not sending on a cached answer: read the row itself before deciding.
        self._cache.pop((app_id, provider), None)
        g = gate(await self.current(app_id, provider), now)
        if not g.probe:
            return g
        if await self.store.take_probe(app_id, provider, now, self.rules.probe_timeout):
            log.info("quarantine of %s/%s: cooldown over, sending one probe", app_id, provider)
            return g
        # Another sender won the probe: wait for its verdict (a success wakes us at once).
        self._cache.pop((app_id, provider), None)
        return Gate(send=False, defer_until=now + self.rules.probe_timeout)

    async def observe(
        self,
        conn: AsyncConnection,
        app_id: str,
        provider: str,
        results: Sequence[SendResult],
        *,
        probing: bool,
    ) -> Breaker:
        """Fold a batch's answers into the breaker; write the row (in ``conn``) when it changed.

        The caller caches the result with :meth:`remember` once the transaction committed.
        """
        key = (app_id, provider)
        hit = self._cache.get(key)
        if (
            not probing
            and hit is not None
            and hit[1] == _CLEAN
            and not any(r.outcome in _UNHEALTHY for r in results)
        ):
            # The common case: a closed breaker with no streak and nothing but healthy answers
            # changes nothing, so it costs no read and no write.
            return _CLEAN
        before = await self.store.breaker_in(conn, app_id, provider)
        if probing:
            # Our probe's verdict, even if the row was reset (a credential upload) meanwhile.
            before = replace(before, state=HALF_OPEN, open_until=None)
        now = time.time()
        after = observe(before, results, self.rules, now, probing=probing)
        if after != before:
            await self.store.save(conn, app_id, provider, after)
            if after.state == CLOSED and before.state != CLOSED:
                await wake_deferred(conn, app_id, provider, now)
            elif probing and after.state == OPEN and after.open_until is not None:
                # The probe failed: the jobs that waited for its verdict (until the probe
                # timeout) wait for the next probe instead, at the end of the new cooldown.
                await reschedule_deferred(conn, app_id, provider, after.open_until)
        if after.state == OPEN and (before.state != OPEN or after.open_until != before.open_until):
            QUARANTINED.labels(app_id, provider).set(1)
            log.warning(
                "quarantined %s/%s for %.0f s after %s (%s); its sends are deferred, not failed",
                app_id,
                provider,
                after.cooldown,
                after.reason_class,
                after.reason_code,
            )
        elif after.state == CLOSED and before.state != CLOSED:
            QUARANTINED.labels(app_id, provider).set(0)
            log.info("quarantine of %s/%s lifted: the probe succeeded", app_id, provider)
        return after

    def remember(self, app_id: str, provider: str, b: Breaker) -> None:
        """Cache a breaker state that is now committed."""
        self._cache[(app_id, provider)] = (time.monotonic(), b)

    def forget(self, app_id: str, provider: str) -> None:
        """Drop the cached rows (the credential was replaced and the rows reset)."""
        self._cache.pop((app_id, provider), None)
        self._origins.pop((app_id, provider), None)
        QUARANTINED.labels(app_id, provider).set(0)

    # -- per push-service origin -----------------------------------------------------------------

    async def origin_states(self, app_id: str, provider: str, *, fresh: bool = False) -> dict[str, Breaker]:
        """The pair's origins that are not clean, re-read at most every ``CACHE_SECONDS``."""
        key = (app_id, provider)
        now = time.monotonic()
        hit = self._origins.get(key)
        if not fresh and hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        rows = await self.store.origin_breakers(app_id, provider)
        states = {origin: b for (_, origin), b in rows.items()}
        self._origins[key] = (now, states)
        return states

    async def origin_gates(
        self, app_id: str, provider: str, members: Mapping[str, Iterable[str]]
    ) -> dict[str, Gate]:
        """The gate of each origin of ``members`` (origin → the chunk's recipients on it) that
        may not simply send (absent: send). A probe is won atomically, as the pair's is; a lost
        one waits for the winner's verdict (its success wakes the waiting jobs). The recipient
        whose answer opened the breaker does not probe it while the cooldown is new: for one
        more cooldown the probe is left to the origin's other targets."""
        now = time.time()
        states = await self.origin_states(app_id, provider)
        if all(o not in states or gate(states[o], now).send for o in members):
            return {}
        states = await self.origin_states(app_id, provider, fresh=True)
        out: dict[str, Gate] = {}
        for origin in sorted(members):
            b = states.get(origin)
            g = gate(b, now) if b is not None else Gate(send=True)
            if g.send or b is None:
                continue
            grace = (b.open_until or now) + b.cooldown
            if g.probe and set(members[origin]) == {b.failed_recipient} and now < grace:
                g = Gate(send=False, defer_until=grace)
            elif g.probe:
                if await self.store.take_origin_probe(
                    app_id, provider, origin, now, self.rules.probe_timeout
                ):
                    log.info(
                        "quarantine of %s/%s origin %s: cooldown over, sending one probe",
                        app_id,
                        provider,
                        origin,
                    )
                else:
                    g = Gate(send=False, defer_until=now + self.rules.probe_timeout)
            out[origin] = g
        return out

    async def observe_origins(
        self,
        conn: AsyncConnection,
        app_id: str,
        provider: str,
        per_origin: Mapping[str, Sequence[SendResult]],
        probes: frozenset[str],
        failed: Mapping[str, str] | None = None,
    ) -> dict[str, Breaker]:
        """Fold each origin's answers into its breaker (written in ``conn``); returns the
        origins whose row changed, for :meth:`remember_origins` after the commit."""
        hit = self._origins.get((app_id, provider))
        known = hit[1] if hit is not None else None
        todo = {
            o: rs
            for o, rs in per_origin.items()
            if known is None or o in known or o in probes or any(r.outcome in _UNHEALTHY for r in rs)
        }
        if not todo:
            return {}
        rows = await self.store.origin_breakers_in(conn, app_id, provider, list(todo))
        now = time.time()
        changed: dict[str, Breaker] = {}
        for origin, results in todo.items():
            stored = rows.get(origin, _CLEAN)
            before = replace(stored, state=HALF_OPEN, open_until=None) if origin in probes else stored
            after = observe(before, results, self.rules, now, probing=origin in probes)
            if after.state == OPEN and (stored.state != OPEN or after.open_until != stored.open_until):
                after = replace(after, failed_recipient=(failed or {}).get(origin))
            if after == stored:
                continue
            await self.store.save_origin(conn, app_id, provider, origin, after)
            changed[origin] = after
            if after.state == OPEN and (stored.state != OPEN or after.open_until != stored.open_until):
                log.warning(
                    "quarantined %s/%s origin %s for %.0f s after %s (%s); only its devices wait",
                    app_id,
                    provider,
                    origin,
                    after.cooldown,
                    after.reason_class,
                    after.reason_code,
                )
            elif after.state == CLOSED and stored.state != CLOSED:
                # Wake the targets held for this origin (held jobs are deferred by the provider;
                # those of origins still open are held again, which costs one small job each).
                await wake_deferred(conn, app_id, provider, now)
                log.info(
                    "quarantine of %s/%s origin %s lifted: the probe succeeded", app_id, provider, origin
                )
        return changed

    def failed_recipient(self, app_id: str, provider: str, origin: str) -> str | None:
        """Who last opened ``origin``'s breaker (from the cached states)."""
        hit = self._origins.get((app_id, provider))
        b = hit[1].get(origin) if hit is not None else None
        return b.failed_recipient if b is not None else None

    def remember_origins(self, app_id: str, provider: str, changed: Mapping[str, Breaker]) -> None:
        """Cache origin states that are now committed."""
        hit = self._origins.get((app_id, provider))
        if hit is None or not changed:
            return
        states = dict(hit[1])
        for origin, b in changed.items():
            if b == _CLEAN:
                states.pop(origin, None)
            else:
                states[origin] = b
        self._origins[(app_id, provider)] = (hit[0], states)
