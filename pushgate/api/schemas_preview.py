"""Answers of ``POST /v1/publish/preview`` and the ``template`` of a publish object
(docs/api.md): kept apart from ``schemas.py`` so each stays a readable size."""

from __future__ import annotations

from typing import Any

import msgspec


class LocalePreview(msgspec.Struct, omit_defaults=True):
    """What one provider would receive for one content variant."""

    #: The request as the provider would receive it (``<device token>`` placeholders).
    request: dict[str, Any] | None = None
    size: int | None = None
    limit: int | None = None
    fits: bool | None = None
    #: Why nothing can be sent to this provider (e.g. nothing to render, reserved data key, a
    #: template error of this variant).
    error: str | None = None


class ProviderPreview(LocalePreview, omit_defaults=True):
    """One provider's preview. A templated or localized publish also has ``locales``: one
    preview per locale variant (``default``: the base content, for devices no variant matches),
    rendered with a sample device; the fields above are then those of its largest variant
    (``fits``: every variant fits; ``error``: the first variant that cannot be rendered)."""

    locales: dict[str, LocalePreview] | None = None


class PublishPreview(msgspec.Struct):
    providers: dict[str, ProviderPreview]


class TemplateUsed(msgspec.Struct):
    """The stored template a publish was rendered from, and which version of it (a later edit
    of the template changes nothing for this publish)."""

    id: str
    version: int
