"""A publish's template and locale variants at admission (docs/templates.md): the template
looked up and copied into the stored request, every variant rendered and size-checked.

Kept apart from ``publish_batch.py`` (which calls it) so each stays a readable size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pushgate.api.errors import ApiError, bad_request
from pushgate.api.schemas import PublishIn
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.personalize import Personalized
from pushgate.domain.templating import TemplateError
from pushgate.store.templates import Template

#: Templates read for one batch, by (id, version asked).
TemplateCache = dict[tuple[str, int | None], Template | None]
#: ``publish_batch.render_checked``: one variant's rendering and size checks.
Check = Callable[[Notification, ProviderOverrides, list[str], float], list[str] | None]


async def load_template(
    app: AppDep, services: ServicesDep, data: PublishIn, cache: TemplateCache | None = None
) -> dict[str, Any] | None:
    """The publish's ``template`` as its stored request keeps it: a copy of the template's body
    and its version, with the publish's data (editing the template later changes nothing for
    this publish); None without one. 400 for an unknown template or version. ``cache``: the
    templates already read for other items of the same batch (one read per template)."""
    ref = data.template
    if ref is None:
        return None
    key = (ref.id, ref.version)
    if cache is not None and key in cache:
        found = cache[key]
    else:
        found = await services.templates.get(app.id, ref.id, ref.version)
        if cache is not None:
            cache[key] = found
    if found is None:
        which = f"version {ref.version} of template" if ref.version is not None else "template"
        raise bad_request(f"template.id: no {which} {ref.id!r} (GET /v1/templates lists them)")
    return {"id": found.id, "version": found.version, "body": found.body, "data": ref.data}


def variants_checked(
    personal: Personalized, targeted: list[str], now: float, render_checked: Check
) -> list[str] | None:
    """``render_checked`` for every locale variant of a personalized publish, each rendered with
    a sample device (undefined ``data``/``l10n`` variables and sandbox refusals are 400 here;
    what depends on the device cannot be known until dispatch). Over a size limit, the largest
    variant is the one reported."""
    try:
        variants = personal.variants()
    except TemplateError as exc:
        raise bad_request(f"{exc.field}: {exc.reason}") from None
    worst: ApiError | None = None
    providers: set[str] = set()
    everyone = False
    for locale, n, overrides in variants:
        label = "the base content" if locale is None else f"locale {locale!r}"
        try:
            only = render_checked(n, overrides, targeted, now)
        except ApiError as exc:
            if exc.code != "payload_too_large":
                raise ApiError(exc.status, exc.code, f"{exc.message} (in {label})", exc.details) from None
            if worst is None or exc.details["size"] > worst.details["size"]:
                worst = ApiError(
                    exc.status, exc.code, f"{exc.message} (in {label})", {**exc.details, "locale": locale}
                )
            continue
        everyone = everyone or only is None
        providers.update(only or ())
    if worst is not None:
        raise worst
    return None if everyone else sorted(providers)
