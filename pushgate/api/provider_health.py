"""``GET /v1/health/providers``: how each provider is doing for the calling app.

Answers from the shared rows (quarantine state, rolling window of answers), so any process
reports the same picture, whichever process did the sending. Web Push and WNS also list their
push-service origins whose breaker is not clean (one origin's failures park only its devices).
"""

from __future__ import annotations

import time

import msgspec
from litestar import get

from pushgate.api.errors import error_responses
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.health import HealthRules, invalid_health
from pushgate.domain.outcomes import ERROR_CLASSES
from pushgate.domain.quarantine import CLOSED, OPEN, Breaker, gate
from pushgate.domain.timefmt import rfc3339
from pushgate.providers import registry
from pushgate.store.health import ProviderHealthStore


class QuarantineReason(msgspec.Struct):
    error_class: str | None
    code: str | None
    message: str | None


class QuarantineOut(msgspec.Struct):
    #: ``closed`` (sending), ``open`` (parked: sends deferred), ``half_open`` (one probe out).
    state: str
    #: Consecutive provider-transient failures counted toward the threshold.
    consecutive_failures: int
    #: While open: when the cooldown ends and a probe is sent.
    until: str | None
    since: str | None
    cooldown_seconds: float | None
    reason: QuarantineReason | None


class OriginHealthOut(msgspec.Struct):
    #: ``scheme://host[:port]`` of a push service the app's devices name.
    origin: str
    quarantine: QuarantineOut


#: Origins listed per provider at most (open ones first).
MAX_ORIGINS = 100


class DistanceToThrottle(msgspec.Struct):
    #: Invalid-rate points left before the threshold (0 when throttled).
    rate_margin: float
    #: Invalid-token answers still needed in the window before the count condition holds.
    invalid_events_needed: int


class ProviderHealthOut(msgspec.Struct):
    provider: str
    #: The app has credentials for it (config file or API).
    configured: bool
    quarantine: QuarantineOut
    #: Answers in the window by error class (all seven classes, zeros included).
    recent: dict[str, int]
    invalid_rate: float
    #: Sending is throttled (and a warning logged) because too many tokens are invalid.
    throttled: bool
    distance_to_throttle: DistanceToThrottle
    #: Web Push and WNS: each push-service origin whose breaker is not clean (a failure streak,
    #: open, or probing), open ones first, at most 100; every other origin is closed. ``null``
    #: for the providers with fixed hosts.
    origins: list[OriginHealthOut] | None = None


class ProvidersHealthOut(msgspec.Struct):
    window_seconds: float
    invalid_rate_threshold: float
    invalid_min_events: int
    providers: list[ProviderHealthOut]


@get(
    "/health/providers",
    summary="Per provider: quarantine state, recent error classes, invalid-token rate, distance to throttle",
    tags=["health"],
    responses=error_responses(401),
)
async def providers_health(app: AppDep, services: ServicesDep) -> ProvidersHealthOut:
    h = services.settings.health
    store = ProviderHealthStore(services.db)
    now = time.time()
    breakers = await store.breakers(app.id)
    window = await store.window(app.id, now - h.window_seconds)
    configured = await services.pool.available(app.id, app.name)
    by_origin: dict[str, list[OriginHealthOut]] = {}
    for (provider, origin), ob in (await store.origin_breakers(app.id)).items():
        by_origin.setdefault(provider, []).append(OriginHealthOut(origin, _quarantine(ob, now)))
    rules = HealthRules(h.invalid_rate_threshold, h.invalid_min_events)
    out: list[ProviderHealthOut] = []
    for name in registry.names():
        counts = window.get(name, {})
        health = invalid_health(counts, rules)
        q = _quarantine(breakers.get(name, Breaker()), now)
        origins = None
        if registry.get(name).origin_of is not None:
            listed = sorted(by_origin.get(name, []), key=lambda o: (o.quarantine.state != OPEN, o.origin))
            origins = listed[:MAX_ORIGINS]
        out.append(
            ProviderHealthOut(
                provider=name,
                configured=name in configured,
                quarantine=q,
                recent={c: counts.get(c, 0) for c in ERROR_CLASSES},
                invalid_rate=round(health.rate, 4),
                throttled=health.throttled,
                distance_to_throttle=DistanceToThrottle(
                    round(health.rate_margin, 4), health.events_to_threshold
                ),
                origins=origins,
            )
        )
    return ProvidersHealthOut(h.window_seconds, h.invalid_rate_threshold, h.invalid_min_events, out)


def _quarantine(b: Breaker, now: float) -> QuarantineOut:
    # An open breaker whose cooldown is over is waiting for its probe: still "open".
    due = b.state == OPEN and gate(b, now).probe
    return QuarantineOut(
        state=b.state,
        consecutive_failures=b.failures,
        until=rfc3339(b.open_until) if b.state == OPEN and not due and b.open_until else None,
        since=rfc3339(b.opened_at) if b.state != CLOSED and b.opened_at else None,
        cooldown_seconds=b.cooldown or None,
        reason=QuarantineReason(b.reason_class, b.reason_code, b.reason_message)
        if b.state != CLOSED
        else None,
    )
