"""``GET /v1/campaigns/{campaign}/stats``: a campaign's publishes summed (docs/campaigns.md).

A campaign is only a name its publishes carry (``"campaign"`` on ``POST /v1/publish``): there is
nothing to create or delete. The sums cover the campaign's newest
``store/publishes/campaigns.py:MAX_CAMPAIGN_PUBLISHES`` publishes (``truncated`` says when there
are more), read with four grouped queries in one read transaction.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.params import FromPath

from pushgate.api.errors import bad_request, error_responses
from pushgate.api.publishes import counts_of
from pushgate.api.schemas import Counts
from pushgate.api.schemas_campaigns import ReasonOut
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.timefmt import rfc3339
from pushgate.store.publishes.campaigns import MAX_CAMPAIGN_PUBLISHES, campaign_totals


class CampaignStatsOut(msgspec.Struct, omit_defaults=True):
    campaign: str
    #: Publishes summed (at most ``MAX_CAMPAIGN_PUBLISHES``, the newest).
    publishes: int
    #: Those publishes by status.
    by_status: dict[str, int]
    #: Their counters summed (every counter of a publish's ``counts``).
    counts: Counts
    by_provider: dict[str, Counts]
    #: Their deliveries' failure reasons summed, most frequent first (at most 50).
    reasons: list[ReasonOut]
    #: More publishes than ``MAX_CAMPAIGN_PUBLISHES``: the oldest were left out.
    truncated: bool = False
    #: Their failed records outnumber ``MAX_REASON_ROWS``: ``reasons`` counts the first of them.
    reasons_truncated: bool = False
    first_created_at: str | None = None
    last_created_at: str | None = None


class CampaignController(Controller):
    path = "/campaigns"
    tags = ["publishes"]

    @get(
        "/{campaign:str}/stats",
        summary="A campaign's counts and failure reasons, summed over its publishes",
        description=f"Sums the newest {MAX_CAMPAIGN_PUBLISHES} publishes of the campaign at most "
        "(`truncated: true` when it has more). An unknown campaign answers zeros.",
        responses=error_responses(400, 401),
    )
    async def campaign_stats(
        self, campaign: FromPath[str], app: AppDep, services: ServicesDep
    ) -> CampaignStatsOut:
        if not 1 <= len(campaign) <= 200:
            raise bad_request("campaign: 1-200 characters")
        t = await campaign_totals(services.publishes.db, app.id, campaign)
        return CampaignStatsOut(
            campaign=campaign,
            publishes=t.publishes,
            by_status=t.by_status,
            counts=counts_of(t.counts),
            by_provider={k: counts_of(v) for k, v in sorted(t.by_provider.items())},
            reasons=[ReasonOut(cls, code, n) for cls, code, n in t.reasons],
            truncated=t.truncated,
            reasons_truncated=t.reasons_truncated,
            first_created_at=rfc3339(t.first_created_at),
            last_created_at=rfc3339(t.last_created_at),
        )
