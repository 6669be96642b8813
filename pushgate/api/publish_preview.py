"""``POST /v1/publish/preview``'s rendering: what each provider would receive, for a plain
publish (one request per provider) and for a templated or localized one (one per provider and
locale variant, rendered with a sample device as admission's checks are: ``publish_content.py``).

Nothing is stored or sent; what admission would refuse is shown as the entry's ``error``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from pushgate.api.publish_batch import stored_recipients, targeted_providers
from pushgate.api.publish_content import check_localization_keys, load_template
from pushgate.api.schemas import PublishIn
from pushgate.api.schemas_preview import LocalePreview, ProviderPreview, PublishPreview
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain import clock
from pushgate.domain.message_ids import PREVIEW_PUBLISH_ID, Stamped
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.personalize import Personalized, sample_device
from pushgate.domain.rendering import render_for
from pushgate.domain.templating import ADMISSION_BUDGET, TemplateError, deadline
from pushgate.providers import registry
from pushgate.store.publishes.campaigns import DEFAULT_LOCALE

#: A variant's key in ``locales`` and its rendering (or its template error).
Variant = tuple[str, tuple[Notification, ProviderOverrides] | str]


def provider_preview(
    provider: str, n: Notification, overrides: ProviderOverrides, now: float, *, ids: bool = True
) -> LocalePreview:
    """The request ``provider`` would receive for ``n``, its size against the limit, or why
    nothing can be rendered. ``ids``: the payload carries message ids, shown with placeholder
    values (docs/receipts.md); the size counts the longest ids either way, as admission does."""
    r = registry.get(provider).renderer
    try:
        if r.check is not None:
            r.check(n)
        rendered = render_for(r, n, overrides, now)
    except (ValueError, TypeError) as exc:
        return LocalePreview(error=str(exc))
    size, limit = r.size(rendered), r.limit(rendered)
    shown = Stamped(rendered, PREVIEW_PUBLISH_ID) if ids else rendered
    return LocalePreview(request=r.preview(shown), size=size, limit=limit, fits=size <= limit)


def variants(personal: Personalized) -> list[Variant]:
    """Every locale variant admission checks (``Personalized.variants``), each rendered with a
    sample device, a variant's template error kept as its message rather than raised (the
    other variants are still shown). The base content is keyed ``default``. All of them within
    admission's time budget (call it in a worker thread, as :func:`preview` does)."""
    base = [] if personal.choose(None) is not None else [None]
    out: list[Variant] = []
    with deadline(ADMISSION_BUDGET):
        for locale in [*base, *personal.locales]:
            key = DEFAULT_LOCALE if locale is None else locale
            try:
                _, n, overrides = personal.render(sample_device(locale), sample=True, locale=locale)
            except TemplateError as exc:
                out.append((key, f"{exc.field}: {exc.reason}"))
                continue
            out.append((key, (n, overrides)))
    return out


def _summary(locales: dict[str, LocalePreview]) -> ProviderPreview:
    """A provider's entry for a personalized publish: its largest variant (admission's size
    check reports that one), ``fits`` only when every variant fits, and every variant."""
    for key, p in locales.items():
        if p.error is not None:
            return ProviderPreview(error=f"locale {key!r}: {p.error}", locales=locales)
    largest = max(locales.values(), key=lambda p: p.size or 0)
    return ProviderPreview(
        request=largest.request,
        size=largest.size,
        limit=largest.limit,
        fits=all(p.fits for p in locales.values()),
        locales=locales,
    )


async def preview(app: AppDep, services: ServicesDep, data: PublishIn) -> PublishPreview:
    """Every targeted provider's rendering of ``data`` (400 for what admission refuses before
    rendering: recipients, an unknown template)."""
    _, direct = stored_recipients(data, services)
    overrides = data.providers or ProviderOverrides()
    targeted = set(await targeted_providers(app, services, direct))
    request: dict[str, Any] = {
        "notification": msgspec.to_builtins(data.notification),
        "providers": msgspec.to_builtins(overrides),
    }
    template = await load_template(app, services, data, render=False)
    if template is not None:
        request["template"] = template
    if data.localizations:
        request["localizations"] = data.localizations
    personal = Personalized.from_request(request)
    if personal is None:
        rendered: list[Variant] = [("", (data.notification, overrides))]
    else:
        check_localization_keys(personal)
        rendered = await asyncio.to_thread(variants, personal) if template else variants(personal)
    # Providers given native overrides (by the publish or a template variant) are shown too,
    # even without credentials yet.
    for _, r in rendered:
        if not isinstance(r, str):
            targeted |= {p for p in registry.names() if r[1].for_provider(p) is not None}
    now = clock.now()
    ids = services.settings.message_ids(app.id, app.name)
    out: dict[str, ProviderPreview] = {}
    for provider in sorted(targeted):
        if personal is None:
            only = provider_preview(provider, data.notification, overrides, now, ids=ids)
            out[provider] = ProviderPreview(**msgspec.structs.asdict(only))
            continue
        out[provider] = _summary(
            {
                key: LocalePreview(error=r)
                if isinstance(r, str)
                else provider_preview(provider, *r, now, ids=ids)
                for key, r in rendered
            }
        )
    return PublishPreview(out)
