"""Campaigns, labels, client-chosen publish ids and dry runs: their request and answer fields
(docs/campaigns.md). ``PublishIn`` and ``PublishOut`` (``schemas.py``) take them as bases."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

#: ``(?!\n)``: Python's ``$`` also matches before a trailing newline (JSON Schema's does not).
#: A campaign names a path segment of ``/v1/campaigns/{campaign}/stats``: no ``/``, no controls.
CampaignName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern=r"^[^/\x00-\x1f\x7f]+$(?!\n)",
        description="1-200 characters, no `/` and no control characters",
        examples=["spring_sale_2026"],
    ),
]
#: 1-64 letters, digits and ``_ . : -`` (checked by the route, whose 400 names the label).
LabelName = str
#: At most 16 labels: names of 1-64 letters, digits, ``_ . : -``; values up to 200 characters.
LabelMap = Annotated[
    dict[LabelName, Annotated[str, msgspec.Meta(max_length=200)]],
    msgspec.Meta(max_length=16, examples=[{"team": "growth", "variant": "b"}]),
]
#: A client-chosen publish id: 1-200 of letters, digits and ``_ . : -``, starting with a letter
#: or digit; never ``pub_…`` (the server's own ids), checked by the route.
ClientPublishId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$(?!\n)",
        description="1-200 of `A-Z a-z 0-9 _ . : -`, starting with a letter or digit, not `pub_`",
        examples=["order-8812-shipped"],
    ),
]


class PublishTagsIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """The fields of a publish that say what it is rather than what to send."""

    #: Groups publishes for ``GET /v1/publishes?campaign=`` and ``/v1/campaigns/{c}/stats``.
    campaign: CampaignName | None = None
    #: Free labels stored with the publish and shown on it.
    labels: LabelMap | None = None
    #: The client's own id for the publish: unique per app, the publish's id in every answer
    #: and route, and its idempotency key (no time window).
    publish_id: ClientPublishId | None = None
    #: Plan, apply policy and render, record ``dry_run`` outcomes, send nothing.
    dry_run: bool = False


class ReasonOut(msgspec.Struct):
    """A failure reason of some deliveries: their last answer's class and code, and how many."""

    error_class: str | None
    code: str | None
    count: int


class PublishTagsOut(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What ``PublishOut`` says about campaigns, client ids and dry runs."""

    #: Failure reasons of the publish's ``failed``, ``invalid_token`` and ``expired``
    #: deliveries, most frequent first (at most 50); ``[]`` when there are none. Read from at
    #: most 10,000 of its failed records; left out of ``GET /v1/publishes`` pages.
    reasons: list[ReasonOut] | None = None
    #: ``reasons`` counted only the first 10,000 failed records (``counts`` has the totals).
    reasons_truncated: bool = False
    #: The server's id (``pub_…``) when ``id`` is the client's ``publish_id``.
    server_id: str | None = None
    campaign: str | None = None
    labels: dict[str, str] | None = None
    dry_run: bool = False
    #: A dry run's rendered payloads: provider → device locale (``default``: none) → request.
    samples: dict[str, dict[str, Any]] | None = None
