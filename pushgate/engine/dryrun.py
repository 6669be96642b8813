"""Dry runs: a dispatch batch of a ``"dry_run": true`` publish, recorded and never sent.

The publish went through everything a real one does before this point: admission's checks,
planning (recipients, stale devices, credentials, policy: preferences, quiet hours, windows;
frequency caps are not taken, see ``store/publishes/policy.py``). Here, instead of the
provider, each target is recorded ``dry_run`` through the dispatcher's own recorder (counters,
progress, the job's end: one transaction, as a real chunk), without touching the provider
pool, rate limits, quarantine or health. A target policy had held (a release batch, queued to
run at once for a dry run) keeps its rule as ``error_code`` and its ``release_at``.

One rendered payload per (provider, device locale) is kept as the publish's sample
(``publish_samples``, first one wins): the request the provider would receive, with the
``<device token>`` placeholder of the preview route, so no sample holds a device's token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pushgate.domain.accounting import DRY_RUN, Attempt, NotAttempted, Skip
from pushgate.domain.jobs import DispatchPayload
from pushgate.domain.status import DeliveryStatus
from pushgate.engine.recorder import JobRecorder
from pushgate.engine.rendering import RenderCache
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


def render_sample(renders: RenderCache, pub: Publish, provider: str, locale: str) -> dict[str, Any]:
    """What ``provider`` would receive for a device of ``locale``: the rendering is per publish
    for now (every locale gets the same payload; per-device rendering replaces this call)."""
    del locale
    renderer = registry.get(provider).renderer
    try:
        rendered = renders.get(pub.id, provider, pub.request, pub.created_at)
    except (ValueError, TypeError) as exc:
        return {"error": str(exc)}
    return dict(renderer.preview(rendered))


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
    device_ids = [t.recipient_id for t in targets if t.recipient_id.startswith("dev_")]
    locales = await device_locales(db, device_ids)
    wanted = {locales.get(t.recipient_id) or DEFAULT_LOCALE for t in targets}
    await write_samples(
        db, pub.id, {(provider, loc): render_sample(renders, pub, provider, loc) for loc in sorted(wanted)}
    )
    rules = await _held_rules(db, pub.id, targets) if payload.held else {}
    results: list[Attempt] = [
        HeldDryRun(Skip.DRY_RUN, rules[t.recipient_id]) if t.recipient_id in rules else DRY_RUN
        for t in targets
    ]
    await record(targets, results, final=True, observed=False)
