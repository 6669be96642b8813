"""Request and response bodies of ``/v1/templates`` (docs/templates.md) and of a publish's
``template`` and ``localizations``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pushgate.domain.personalize import LocaleTag, TemplateBody

#: Versions are 32-bit integers in the database; a larger one cannot exist (a 404 for it would
#: need the database to compare an out-of-range number, which PostgreSQL refuses).
MAX_VERSION = 2**31 - 1

#: An app-chosen template id (``order_shipped``).
TemplateId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class TemplateCreate(TemplateBody, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """``POST /v1/templates``: the template's fields and its id."""

    id: TemplateId


class TemplateOut(TemplateBody, omit_defaults=True, kw_only=True):
    """A version of a template: its fields, as stored, and which version this is."""

    id: str
    version: int
    #: When the template (version 1) was created.
    created_at: str
    #: When this version was written.
    updated_at: str


class TemplatePage(msgspec.Struct):
    #: The current version of each template, by id.
    items: list[TemplateOut]


class TemplateRef(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A publish's ``template``: which stored template, with what data (``data.*`` in it)."""

    id: TemplateId
    data: Annotated[dict[str, Any], msgspec.Meta(max_length=200)] = msgspec.field(default_factory=dict)
    #: A version of the template (default: its current one).
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)] | None = None


#: A publish's inline ``localizations``: per locale, ``title``/``body`` (replacing the
#: notification's) and any translation keys a template reads as ``l10n.<key>``.
Localizations = Annotated[
    dict[
        LocaleTag,
        Annotated[
            dict[
                Annotated[str, msgspec.Meta(min_length=1, max_length=200)],
                Annotated[str, msgspec.Meta(max_length=4096)],
            ],
            msgspec.Meta(max_length=200),
        ],
    ],
    msgspec.Meta(max_length=100),
]
