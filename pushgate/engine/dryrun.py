"""Dry runs: a dispatch batch of a ``"dry_run": true`` publish, recorded and never sent.

The publish went through everything a real one does before this point: admission's checks,
planning (recipients, stale devices, credentials, policy: preferences, quiet hours, windows;
frequency caps are not taken, see ``store/publishes/policy.py``). Here, instead of the
provider, each target is recorded ``dry_run`` through the dispatcher's own recorder (counters,
progress, the job's end: one transaction, as a real chunk), without touching the provider
pool, rate limits, quarantine or health. A target policy had held (a release batch, queued to
run at once for a dry run) keeps its rule as ``error_code`` and its ``release_at``.

Targets are rendered as the dispatcher renders them (``RenderCache.render_targets``: per device
for a templated or localized publish), so a device whose template fails is recorded ``failed``
(``payload``) as it would be for real. One rendered payload per (provider, locale) is kept as
the publish's sample (``publish_samples``, first one wins; the locale variant chosen, else the
device's locale): the request the provider would receive, with the ``<device token>``
placeholder of the preview route, so no sample holds a device's token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pushgate.domain.accounting import DRY_RUN, Attempt, NotAttempted, Skip
from pushgate.domain.jobs import DispatchPayload
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.status import DeliveryStatus
from pushgate.engine.recorder import JobRecorder
from pushgate.engine.rendering import Group, RenderCache
from pushgate.providers import registry
from pushgate.providers.base import Target
from pushgate.store.db import Database
from pushgate.store.publishes import Publish
from pushgate.store.publishes.campaigns import DEFAULT_LOCALE, device_locales, write_samples
from pushgate.store.schema import deliveries


@dataclass(frozen=True, slots=True)
class HeldDryRun(NotAttempted):
    """A dry-run target that policy held: recorded ``dry_run``, its rule kept as the code."""

    rule: str = "held"

    @property
    def error_code(self) -> str:
        return self.rule


def _preview(provider: str, rendered: Any) -> dict[str, Any]:
    """What ``provider`` would receive, with the preview route's ``<device token>`` placeholder."""
    return dict(registry.get(provider).renderer.preview(rendered))


async def _held_rules(db: Database, publish_id: str, targets: list[Target]) -> dict[str, str]:
    """The rule each held target of a release batch is held by (its record's ``error_code``)."""
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(deliveries.c.recipient_id, deliveries.c.error_code).where(
                    deliveries.c.publish_id == publish_id,
                    deliveries.c.recipient_id.in_([t.recipient_id for t in targets]),
                    deliveries.c.status == DeliveryStatus.HELD.value,
                )
            )
        ).all()
    return {r.recipient_id: r.error_code or "held" for r in rows}


async def dry_run(
    db: Database,
    renders: RenderCache,
    record: JobRecorder,
    pub: Publish,
    payload: DispatchPayload,
    targets: list[Target],
) -> None:
    """Record the batch's ``targets`` ``dry_run`` and keep one sample per (provider, locale)."""
    provider = payload.provider
    try:
        # The dispatcher's own rendering: per device for a templated or localized publish, so a
        # device whose template fails is recorded as it would be for real (``payload``).
        groups = await renders.render_targets(pub.id, provider, pub.request, pub.created_at, targets)
    except (ValueError, TypeError) as exc:
        failed = SendResult(Outcome.PAYLOAD, error_code="render_error", error_message=f"{provider}: {exc}")
        groups = [Group(None, targets, failed)]
    device_ids = [t.recipient_id for t in targets if t.recipient_id.startswith("dev_")]
    locales = await device_locales(db, device_ids)
    samples: dict[tuple[str, str], dict[str, Any]] = {}
    failures: dict[str, SendResult] = {}
    for group in groups:
        if group.failure is not None:
            failures.update((t.recipient_id, group.failure) for t in group.targets)
            continue
        for t in group.targets:
            locale = group.locale or locales.get(t.recipient_id) or DEFAULT_LOCALE
            if (provider, locale) not in samples:
                samples[(provider, locale)] = _preview(provider, group.rendered)
    await write_samples(db, pub.id, samples)
    rules = await _held_rules(db, pub.id, targets) if payload.held else {}
    results: list[Attempt] = [
        failures[t.recipient_id]
        if t.recipient_id in failures
        else HeldDryRun(Skip.DRY_RUN, rules[t.recipient_id])
        if t.recipient_id in rules
        else DRY_RUN
        for t in targets
    ]
    await record(targets, results, final=True, observed=False)
