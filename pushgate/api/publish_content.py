"""A publish's template and locale variants at admission (docs/templates.md): the template
looked up and copied into the stored request, every variant rendered and size-checked.

Rendering a template is CPU work bounded by a deadline, never on the event loop:
:func:`load_template` renders every variant in a worker thread and keeps the result for
:func:`variants_checked`, which ``publish_batch.admission_request`` calls synchronously right
after (no ``await`` in between, so the hand-over cannot interleave with another request).
Kept apart from ``publish_batch.py`` (which calls it) so each stays a readable size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from pushgate.api.errors import ApiError, bad_request
from pushgate.api.schemas import PublishIn
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.personalize import Personalized, unknown_localization_keys
from pushgate.domain.templating import ADMISSION_BUDGET, MAX_DATA_DEPTH, TemplateError, data_depth, deadline
from pushgate.store.templates import Template

#: Templates read for one batch, by (id, version asked).
TemplateCache = dict[tuple[str, int | None], Template | None]
#: ``publish_batch.render_checked``: one variant's rendering and size checks.
Check = Callable[[Notification, ProviderOverrides, list[str], float], list[str] | None]
#: Every variant of a publish rendered with a sample device: ``(locale, notification, overrides)``.
Variants = list[tuple[str | None, Notification, ProviderOverrides]]

#: Variants :func:`load_template` rendered in a worker thread, for :func:`variants_checked`, by
#: the identity of the template copy it returned (which the stored request holds); the copy is
#: kept alongside so a reused ``id`` can never match. Taken on use; a few left by a request that
#: failed in between are evicted oldest first.
_RENDERED: dict[int, tuple[dict[str, Any], Variants]] = {}
_RENDERED_SIZE = 64


def personalized_of(data: PublishIn, template: dict[str, Any] | None) -> Personalized | None:
    """The publish's per-device content as its stored request will say (None: the same for
    every device)."""
    request: dict[str, Any] = {
        "notification": msgspec.to_builtins(data.notification),
        "providers": msgspec.to_builtins(data.providers or ProviderOverrides()),
    }
    if template is not None:
        request["template"] = template
    if data.localizations:
        request["localizations"] = data.localizations
    return Personalized.from_request(request)


def sample_variants(personal: Personalized) -> Variants:
    """``personal.variants()`` under the admission budget (call it in a worker thread)."""
    with deadline(ADMISSION_BUDGET):
        return personal.variants()


def check_data_depth(data: PublishIn) -> None:
    """400 naming ``template.data`` when it nests deeper than :data:`MAX_DATA_DEPTH` (its
    variables are built recursively: thousands of levels would be a RecursionError)."""
    if data.template is not None:
        depth = data_depth(data.template.data)
        if depth > MAX_DATA_DEPTH:
            raise bad_request(
                f"template.data: objects and lists nested {depth} levels deep; "
                f"at most {MAX_DATA_DEPTH} are accepted (flatten the data)"
            )


def check_localization_keys(personal: Personalized) -> None:
    """400 naming the inline localization keys nothing would read (a typo such as ``titel``)."""
    unknown = unknown_localization_keys(personal.localizations, templated=personal.template is not None)
    if unknown:
        raise bad_request(
            f"{unknown[0]}: unknown key; without a template a localization gives only 'title' "
            "and 'body' (other keys are translation keys, read by a template as l10n.<key>)",
            {"fields": unknown},
        )


async def load_template(
    app: AppDep,
    services: ServicesDep,
    data: PublishIn,
    cache: TemplateCache | None = None,
    *,
    render: bool = True,
) -> dict[str, Any] | None:
    """The publish's ``template`` as its stored request keeps it: a copy of the template's body
    and its version, with the publish's data (editing the template later changes nothing for
    this publish); None without one. 400 for an unknown template or version, ``data`` nested
    too deeply, or (``render``) a variant that fails or overruns its time budget, every variant
    being rendered here in a worker thread for :func:`variants_checked`. ``cache``: the
    templates already read for other items of the same batch (one read per template)."""
    ref = data.template
    if ref is None:
        return None
    check_data_depth(data)
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
    copy = {"id": found.id, "version": found.version, "body": found.body, "data": ref.data}
    if render:
        personal = personalized_of(data, copy)
        if personal is not None:
            try:
                rendered = await asyncio.to_thread(sample_variants, personal)
            except TemplateError as exc:
                raise bad_request(f"{exc.field}: {exc.reason}") from None
            while len(_RENDERED) >= _RENDERED_SIZE:
                _RENDERED.pop(next(iter(_RENDERED)))
            _RENDERED[id(copy)] = (copy, rendered)
    return copy


def _rendered(personal: Personalized) -> Variants:
    """The variants :func:`load_template` rendered for this publish, else rendered now (a
    publish with inline localizations only: no template, nothing but look-ups)."""
    hit = _RENDERED.pop(id(personal.source), None) if personal.source is not None else None
    if hit is not None and hit[0] is personal.source:
        return hit[1]
    return sample_variants(personal)


def variants_checked(
    personal: Personalized, targeted: list[str], now: float, render_checked: Check
) -> list[str] | None:
    """``render_checked`` for every locale variant of a personalized publish, each rendered with
    a sample device (undefined ``data``/``l10n`` variables and sandbox refusals are 400 here;
    what depends on the device cannot be known until dispatch). Over a size limit, the largest
    variant is the one reported."""
    check_localization_keys(personal)
    try:
        variants = _rendered(personal)
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
