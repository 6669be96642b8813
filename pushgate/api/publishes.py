"""Publish admission and publish status routes.

Admission validates everything it can (recipients, channel names, tokens, times, policy fields,
each targeted provider's rendered size: the checks it shares with the batch route, in
``publish_batch.py``) before anything is stored, then writes the publish and its first job in
one transaction (a small publish: its delivery records and dispatch jobs, planned in that
transaction; a scheduled one: its plan job, due at its ``send_at``). Nothing is sent inside the
request.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, patch, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from pushgate.api import cursors, publish_preview
from pushgate.api.common import page_limit
from pushgate.api.errors import ApiError, bad_request, error_responses, not_found
from pushgate.api.publish_batch import (
    WORK_NOW,
    admission_request,
    check_categories,
    checked_bounds,
    inline_plan,
    parse_time_field,
    refuse_if_backpressured,
    stored_recipients,
    targeted_providers,
)
from pushgate.api.publish_content import load_template
from pushgate.api.publish_realtime import with_realtime
from pushgate.api.publish_tags import (
    id_conflict,
    publish_tags,
    server_id,
    tags_out,
    wait_dry_run,
    with_dry_run,
)
from pushgate.api.schemas import (
    Counts,
    DeliveryOut,
    DeliveryPage,
    PublishAccepted,
    PublishIn,
    PublishOut,
    PublishPage,
)
from pushgate.api.schemas_preview import PublishPreview, TemplateUsed
from pushgate.api.services import AppDep, Services, ServicesDep
from pushgate.domain import clock
from pushgate.domain.status import POLICY_STATUSES, DeliveryStatus, PublishStatus
from pushgate.domain.timefmt import rfc3339
from pushgate.store.apps import App
from pushgate.store.publishes import Publish
from pushgate.store.publishes.campaigns import COUNTED
from pushgate.store.publishes.client_ids import IdConflict

_DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)
_PUBLISH_STATUSES = tuple(s.value for s in PublishStatus)
#: A dry run's record that policy had held keeps its rule and release time.
_WITH_REASON = (*POLICY_STATUSES, DeliveryStatus.DRY_RUN)
_WITH_RELEASE = (DeliveryStatus.HELD, DeliveryStatus.DRY_RUN)


async def admit_publish(app: App, services: Services, data: PublishIn) -> tuple[Publish, bool]:
    """Admit one publish (validated, stored with its first job, small ones planned in that
    commit) and wake the workers: the one path every API that sends takes, native or compat
    (a compat front-end builds a ``PublishIn`` and calls this). Returns the publish and whether
    it was created (False: an idempotent replay)."""
    await refuse_if_backpressured(app, services)
    limits = services.settings.limits
    expire_at, send_at = checked_bounds(data, limits.max_recipients_per_publish, clock.now())
    recipients, token_providers = stored_recipients(data, services)
    targeted = await targeted_providers(app, services, token_providers)
    now = clock.now()
    tags = publish_tags(data, send_at, now)
    template = await load_template(app, services, data)
    request = with_dry_run(admission_request(data, recipients, targeted, now, template), tags)
    request = with_realtime(request, data, services.settings)
    await check_categories(app, services, data)
    scheduled = send_at is not None and send_at > now
    try:
        pub, created = await services.publishes.admit(
            app.id,
            request,
            idempotency_key=data.idempotency_key,
            expire_at=expire_at,
            window_seconds=limits.idempotency_window_hours * 3600,
            # A scheduled publish is planned when its time comes (by then its audience changed).
            plan=None if scheduled else await inline_plan(app, services, recipients, request, expire_at),
            send_at=send_at,
            tags=tags,
        )
    except IdConflict as exc:
        raise id_conflict(exc) from None
    # A publish closed in its own commit (nobody to reach) queued no job, and a scheduled one's
    # job is not due: waking the workers would only make each run an empty claim (a sixth of
    # the CPU of bench admission).
    if created and services.engine is not None and pub.status in WORK_NOW:
        services.engine.notify()
    return pub, created


class PublishPatch(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /v1/publishes/{id}``: what a publish may still change while it is ``scheduled``."""

    #: RFC 3339: the new start (a past time means now).
    send_at: Annotated[str, msgspec.Meta(max_length=64)]


def counts_of(d: dict[str, int]) -> Counts:
    return Counts(**{c: int(d.get(c, 0)) for c in COUNTED})


def publish_out(p: Publish) -> PublishOut:
    return PublishOut(
        id=p.public_id,
        status=p.status,
        created_at=rfc3339(p.created_at) or "",
        counts=counts_of(p.counts),
        by_provider={k: counts_of(v) for k, v in sorted(p.by_provider.items())},
        completed_at=rfc3339(p.completed_at),
        started_at=rfc3339(p.started_at),
        expire_at=rfc3339(p.expire_at),
        idempotency_key=p.idempotency_key,
        error={"code": p.error_code, "message": p.error_message or ""} if p.error_code else None,
        send_at=rfc3339(p.send_at),
        suppressed_by_reason=p.reasons.get("suppressed"),
        skipped_by_reason=p.reasons.get("skipped"),
        template=template_used(p),
        **tags_out(p),
    )


def template_used(p: Publish) -> TemplateUsed | None:
    """The template and version ``p``'s stored request copied at admission (None without one)."""
    t = p.request.get("template")
    return TemplateUsed(t["id"], int(t["version"])) if t else None


class PublishController(Controller):
    path = "/"
    tags = ["publishes"]

    @post(
        "/publish/preview",
        status_code=HTTP_200_OK,
        summary="Render a publish for every targeted provider without sending or storing anything",
        responses=error_responses(400, 401, 413),
    )
    async def preview(self, data: JSONBody[PublishIn], app: AppDep, services: ServicesDep) -> PublishPreview:
        return await publish_preview.preview(app, services, data)

    @post(
        "/publish",
        status_code=HTTP_202_ACCEPTED,
        summary="Publish a notification",
        responses={
            **error_responses(400, 401, 413, 429),
            200: ResponseSpec(
                PublishOut,
                generate_examples=False,
                description="A dry run (`dry_run: true`) that finished within the route's wait "
                "(docs/campaigns.md); otherwise 202",
            ),
        },
    )
    async def publish(
        self, data: JSONBody[PublishIn], app: AppDep, services: ServicesDep
    ) -> Response[PublishAccepted | PublishOut]:
        pub, created = await admit_publish(app, services, data)
        headers = {} if created else {"Idempotent-Replayed": "true"}
        if pub.dry_run:  # answered with its outcome when it is done within DRY_RUN_WAIT
            done = await wait_dry_run(services, pub)
            if done is not None:
                return Response(publish_out(done), status_code=HTTP_200_OK, headers=headers)
        return Response(
            PublishAccepted(pub.public_id, pub.status), status_code=HTTP_202_ACCEPTED, headers=headers
        )

    @get("/publishes", summary="Publishes, newest first", responses=error_responses(400, 401))
    async def list_publishes(
        self,
        app: AppDep,
        services: ServicesDep,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
        status: FromQuery[str | None] = None,
        campaign: Annotated[str | None, QueryParameter(min_length=1, max_length=200)] = None,
    ) -> PublishPage:
        if status is not None and status not in _PUBLISH_STATUSES:
            raise bad_request(f"status: one of {', '.join(_PUBLISH_STATUSES)}")
        pubs, nxt = await services.publishes.list_publishes(
            app.id,
            cursor=cursors.decode_one(cursor),
            limit=page_limit(limit, services.settings),
            status=status,
            campaign=campaign,
        )
        return PublishPage([publish_out(p) for p in pubs], cursors.encode_next(nxt))

    @get(
        "/publishes/{publish_id:str}",
        summary="A publish's status and counts",
        responses=error_responses(400, 401, 404),
    )
    async def get_publish(self, publish_id: FromPath[str], app: AppDep, services: ServicesDep) -> PublishOut:
        pub = await services.publishes.get(app.id, publish_id)
        if pub is None:
            raise not_found("publish", publish_id)
        return publish_out(pub)

    @patch(
        "/publishes/{publish_id:str}",
        summary="Re-time a scheduled publish (a new send_at; a past one starts it now)",
        responses=error_responses(400, 401, 404, 409),
    )
    async def patch_publish(
        self, publish_id: FromPath[str], data: JSONBody[PublishPatch], app: AppDep, services: ServicesDep
    ) -> PublishOut:
        send_at = parse_time_field(data.send_at, "send_at")
        publish_id = await server_id(services, app.id, publish_id)
        pub = await services.publishes.get(app.id, publish_id, with_counts=False)
        if pub is None:
            raise not_found("publish", publish_id)
        if pub.status == PublishStatus.SCHEDULED and pub.expire_at is not None and send_at >= pub.expire_at:
            raise bad_request("send_at: must be before the publish's expire_at")
        pub, changed = await services.publishes.reschedule(app.id, publish_id, send_at)
        if pub is None:
            raise not_found("publish", publish_id)
        if not changed:
            started = "is starting" if pub.status == PublishStatus.SCHEDULED else f"is already {pub.status}"
            raise ApiError(
                409,
                "conflict",
                f"publish {publish_id!r} {started}: only a scheduled publish can be re-timed",
                {"status": pub.status},
            )
        if pub.status in WORK_NOW and services.engine is not None:
            services.engine.notify()
        return publish_out(pub)

    @post(
        "/publishes/{publish_id:str}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel a publish: nothing not yet sent is sent",
        responses=error_responses(401, 404, 409),
    )
    async def cancel_publish(
        self, publish_id: FromPath[str], app: AppDep, services: ServicesDep
    ) -> PublishOut:
        pub, changed = await services.publishes.cancel(app.id, await server_id(services, app.id, publish_id))
        if pub is None:
            raise not_found("publish", publish_id)
        if not changed and pub.status != "cancelled":
            raise ApiError(
                409, "conflict", f"publish {publish_id!r} is already {pub.status}", {"status": pub.status}
            )
        return publish_out(pub)

    @get(
        "/publishes/{publish_id:str}/deliveries",
        summary="One record per recipient",
        responses=error_responses(400, 401, 404),
    )
    async def deliveries(
        self,
        publish_id: FromPath[str],
        app: AppDep,
        services: ServicesDep,
        status: FromQuery[str | None] = None,
        provider: FromQuery[str | None] = None,
        reason: Annotated[str | None, QueryParameter(max_length=80)] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> DeliveryPage:
        if status is not None and status not in _DELIVERY_STATUSES:
            raise bad_request(f"status: one of {', '.join(_DELIVERY_STATUSES)}")
        publish_id = await server_id(services, app.id, publish_id)
        pub = await services.publishes.get(app.id, publish_id, with_counts=False)
        if pub is None:
            raise not_found("publish", publish_id)
        rows, nxt = await services.publishes.deliveries(
            app.id,
            publish_id,
            status=status,
            provider=provider,
            reason=reason,
            cursor=cursors.decode_one(cursor),
            limit=page_limit(limit, services.settings),
        )
        return DeliveryPage(
            [
                DeliveryOut(
                    device_id=r.device_id,
                    recipient_id=r.recipient_id,
                    provider=r.provider,
                    status=r.status,
                    error_code=r.error_code,
                    error_message=r.error_message,
                    error_class=r.error_class,
                    attempts=r.attempts,
                    sent_at=rfc3339(r.sent_at),
                    provider_message_id=r.provider_message_id,
                    reason=r.error_code if r.status in _WITH_REASON and r.error_code != "dry_run" else None,
                    release_at=rfc3339(r.release_at) if r.status in _WITH_RELEASE else None,
                    delivered_at=rfc3339(r.delivered_at),
                    opened_at=rfc3339(r.opened_at),
                    dismissed_at=rfc3339(r.dismissed_at),
                    clicked_at=rfc3339(r.clicked_at),
                )
                for r in rows
            ],
            cursors.encode_next(nxt),
        )
