"""Dead letters: deliveries that exhausted their attempts on retryable errors, and their replay."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from pushgate.api import cursors
from pushgate.api.common import page_limit
from pushgate.api.errors import bad_request, error_responses
from pushgate.api.schemas_deadletters import DeadLetterOut, DeadLetterPage, ReplayIn, ReplayOut
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.timefmt import rfc3339
from pushgate.engine.deadletters import replay

#: Ids one replay request may name.
MAX_REPLAY_IDS = 1000


def _after(keys: tuple[str, ...] | None) -> tuple[str, str] | None:
    return None if keys is None else (keys[0], keys[1])


class DeadLetterController(Controller):
    path = "/dead-letters"
    tags = ["dead letters"]

    @get("/", summary="Deliveries that exhausted their attempts", responses=error_responses(400, 401))
    async def list_dead_letters(
        self,
        app: AppDep,
        services: ServicesDep,
        provider: FromQuery[str | None] = None,
        publish_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> DeadLetterPage:
        if publish_id:  # a client-chosen publish_id filters as its server id (docs/campaigns.md)
            publish_id = await services.publishes.resolve(app.id, publish_id) or publish_id
        items, nxt = await services.publishes.dead_letters(
            app.id,
            provider=provider,
            publish_id=publish_id,
            after=_after(cursors.decode(cursor, 2)),
            limit=page_limit(limit, services.settings),
        )
        return DeadLetterPage(
            [
                DeadLetterOut(
                    publish_id=d.publish_id,
                    recipient_id=d.recipient_id,
                    device_id=d.device_id,
                    provider=d.provider,
                    attempts=d.attempts,
                    error_code=d.error_code,
                    error_message=d.error_message,
                    error_class=d.error_class,
                    failed_at=rfc3339(d.updated_at) or "",
                )
                for d in items
            ],
            cursors.encode_next(tuple(nxt) if nxt else None),
        )

    @post(
        "/replay",
        status_code=HTTP_200_OK,
        summary="Send dead letters again (a fresh set of attempts)",
        responses=error_responses(400, 401),
    )
    async def replay_dead_letters(
        self, data: JSONBody[ReplayIn], app: AppDep, services: ServicesDep
    ) -> ReplayOut:
        if (data.ids is None) == (data.filter is None):
            raise bad_request("give either ids or filter")
        keys = None
        provider = publish_id = None
        if data.ids is not None:
            if len(data.ids) > MAX_REPLAY_IDS:
                raise bad_request(f"ids: at most {MAX_REPLAY_IDS} per request (use a filter)")
            # Client publish ids name their server ids (one read for all of them); an unknown
            # one stays as given and so matches no dead letter (docs/campaigns.md).
            named = await services.publishes.resolve_many(app.id, [k.publish_id for k in data.ids])
            keys = [(named.get(k.publish_id, k.publish_id), k.recipient_id) for k in data.ids]
        elif data.filter is not None:
            provider, publish_id = data.filter.provider, data.filter.publish_id
            if publish_id:
                publish_id = await services.publishes.resolve(app.id, publish_id) or publish_id
        replayed, skipped = await replay(
            services.publishes,
            app.id,
            keys=keys,
            provider=provider,
            publish_id=publish_id,
            batch_size=services.settings.engine.batch_size,
        )
        if replayed and services.engine is not None:
            services.engine.notify()
        return ReplayOut(replayed, skipped)
