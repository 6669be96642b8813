"""Publish admission and publish status routes.

Admission validates everything it can (recipients, channel names, tokens, each targeted
provider's rendered size) before anything is stored, then writes the publish and its first
job in one transaction (a small publish: its delivery records and dispatch jobs, planned in that
transaction). Nothing is sent inside the request.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from pushgate.api import cursors
from pushgate.api.common import check_channels, normalize_token, page_limit, provider_spec
from pushgate.api.errors import ApiError, bad_request, error_responses, not_found
from pushgate.api.schemas import (
    ChannelRecipient,
    Counts,
    DeliveryOut,
    DeliveryPage,
    DeviceRecipient,
    ProviderPreview,
    PublishAccepted,
    PublishIn,
    PublishOut,
    PublishPage,
    PublishPreview,
    TokenRecipient,
    UserRecipient,
)
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain import clock
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.rendering import NotificationError, oversize, render_for
from pushgate.domain.status import OPEN_PUBLISH, POLICY_STATUSES, DeliveryStatus
from pushgate.domain.timefmt import parse_rfc3339, rfc3339
from pushgate.providers import registry
from pushgate.store.audience import SMALL_KINDS
from pushgate.store.publishes import COUNTERS, InlinePlan, Publish

_DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)


def _counts(d: dict[str, int]) -> Counts:
    return Counts(**{c: int(d.get(c, 0)) for c in COUNTERS})


def publish_out(p: Publish) -> PublishOut:
    return PublishOut(
        id=p.id,
        status=p.status,
        created_at=rfc3339(p.created_at) or "",
        counts=_counts(p.counts),
        by_provider={k: _counts(v) for k, v in sorted(p.by_provider.items())},
        completed_at=rfc3339(p.completed_at),
        started_at=rfc3339(p.started_at),
        expire_at=rfc3339(p.expire_at),
        idempotency_key=p.idempotency_key,
        error={"code": p.error_code, "message": p.error_message or ""} if p.error_code else None,
        send_at=rfc3339(p.send_at),
        suppressed_by_reason=p.reasons.get("suppressed"),
        skipped_by_reason=p.reasons.get("skipped"),
    )


def _recipients(data: PublishIn, services: ServicesDep) -> tuple[list[dict[str, Any]], set[str]]:
    """Normalise the recipients for storage; returns them and the providers they name directly."""
    out: list[dict[str, Any]] = []
    direct: set[str] = set()
    for i, r in enumerate(data.recipients):
        where = f"recipients[{i}]"
        if isinstance(r, DeviceRecipient):
            out.append({"type": "device", "device_id": r.device_id})
        elif isinstance(r, ChannelRecipient):
            check_channels([r.channel], f"{where}.channel")
            out.append({"type": "channel", "channel": r.channel})
        elif isinstance(r, UserRecipient):
            out.append({"type": "user", "user": r.user})
        elif isinstance(r, TokenRecipient):
            provider_spec(r.provider, f"{where}.provider")
            try:
                token, key = normalize_token(r.provider, r.token, services.settings)
            except ApiError as exc:
                raise bad_request(f"{where}.{exc.message}") from None
            direct.add(r.provider)
            out.append({"type": "token", "provider": r.provider, "token": token, "token_key": key})
        else:
            provider, kind, value = _native(r, where)
            direct.add(provider)
            out.append({"type": "native", "provider": provider, "token": f"{kind}:{value}"})
    return out, direct


def _native(r: msgspec.Struct, where: str) -> tuple[str, str, str]:
    """``(provider, target kind, value)`` of a native recipient; the registry says which
    provider a recipient type belongs to (``ProviderSpec.native``)."""
    recipient_type = str(type(r).__struct_config__.tag)
    found = registry.native(recipient_type)
    if found is None:
        raise bad_request(f"{where}.type: {recipient_type!r} is not deliverable by this build")
    spec, kind = found
    return spec.name, kind, str(getattr(r, kind))


async def refuse_if_backpressured(app: AppDep, services: ServicesDep) -> None:
    """``429 rate_limited`` while this app has too much work queued (per app: another tenant's
    backlog never refuses it); shared by the single and the batch route."""
    if services.backpressure is None:
        return
    pressure = await services.backpressure.check(app.id, app.name)
    if pressure is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"too much work queued, retry later: {pressure.reason}",
            {"retry_after": pressure.retry_after},
            headers={"Retry-After": str(pressure.retry_after)},
        )


def checked_bounds(data: PublishIn, max_recipients: int, now: float) -> float | None:
    """The recipient count and ``expire_at`` of one publish body checked (400 otherwise); the
    expiry as a UNIX time."""
    if len(data.recipients) > max_recipients:
        raise bad_request(
            f"recipients: at most {max_recipients} entries per publish "
            "(limits.max_recipients_per_publish); use a channel for large audiences"
        )
    if data.expire_at is None:
        return None
    try:
        expire_at = parse_rfc3339(data.expire_at)
    except ValueError as exc:
        raise bad_request(f"expire_at: not an RFC 3339 time: {exc}") from None
    if expire_at <= now:
        raise bad_request("expire_at: is in the past")
    return expire_at


async def _targeted(app: AppDep, services: ServicesDep, token_providers: set[str]) -> list[str]:
    """Providers this publish may reach: those the app has credentials for, plus raw-token ones."""
    # Up to a second old: only the size checks depend on it; the planner reads it afresh.
    configured = await services.pool.available(app.id, app.name, max_age=1.0)
    return sorted((configured | token_providers) & set(registry.names()))


def _render_checked(
    n: Notification, overrides: ProviderOverrides, targeted: list[str], now: float
) -> dict[str, Any]:
    """Render for every targeted provider, answering 400 for what cannot be sent."""
    if not n.has_content() and not msgspec.to_builtins(overrides):
        raise bad_request(
            "notification: give a title, body, data or content_available (or a provider-native override)"
        )
    out: dict[str, Any] = {}
    for provider in targeted:
        renderer = registry.get(provider).renderer
        if renderer.check is not None:
            try:
                renderer.check(n)
            except NotificationError as exc:
                raise bad_request(f"notification.{exc.field}: {exc}") from None
        try:
            rendered = render_for(renderer, n, overrides, now)
        except (ValueError, TypeError) as exc:
            raise bad_request(f"providers.{provider}: {exc}") from None
        too_big = oversize(renderer, rendered)
        if too_big:
            size, limit = too_big
            raise bad_request(
                f"payload for {provider} is {size} bytes, over its {limit}-byte limit",
                {"provider": provider, "size": size, "limit": limit},
                code="payload_too_large",
            )
        out[provider] = rendered
    return out


async def _inline_plan(
    app: AppDep, services: ServicesDep, recipients: list[dict[str, Any]]
) -> InlinePlan | None:
    """How admission may plan this publish itself (``engine.plan_at_admission``), or None for a
    long list: it goes to the planner, page by page (so does one whose users or channels turn out
    to reach more devices)."""
    e = services.settings.engine
    if len(recipients) > e.plan_at_admission or any(r["type"] not in SMALL_KINDS for r in recipients):
        return None
    days = services.settings.devices.max_inactive_days
    return InlinePlan(
        app_name=app.name,
        # The credentials as admission's size checks read them (this process's changes at once,
        # other processes' within a second); a provider without them fails its records
        # ``no_credentials`` exactly as in the planner.
        configured=frozenset(await services.pool.available(app.id, app.name, max_age=1.0)),
        batch_size=e.batch_size,
        max_rows=e.plan_at_admission,
        seen_after=time.time() - days * 86400 if days > 0 else None,
    )


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
        _, direct = _recipients(data, services)
        n = data.notification
        overrides = data.providers or ProviderOverrides()
        targeted = await _targeted(app, services, direct)
        # Providers given native overrides are shown too, even without credentials yet.
        targeted = sorted(
            set(targeted) | {p for p in registry.names() if overrides.for_provider(p) is not None}
        )
        now = clock.now()
        out: dict[str, ProviderPreview] = {}
        for provider in targeted:
            r = registry.get(provider).renderer
            try:
                if r.check is not None:
                    r.check(n)
                rendered = render_for(r, n, overrides, now)
            except (ValueError, TypeError) as exc:
                out[provider] = ProviderPreview(error=str(exc))
                continue
            size, limit = r.size(rendered), r.limit(rendered)
            out[provider] = ProviderPreview(
                request=r.preview(rendered), size=size, limit=limit, fits=size <= limit
            )
        return PublishPreview(out)

    @post(
        "/publish",
        status_code=HTTP_202_ACCEPTED,
        summary="Publish a notification",
        responses=error_responses(400, 401, 413, 429),
    )
    async def publish(
        self, data: JSONBody[PublishIn], app: AppDep, services: ServicesDep
    ) -> Response[PublishAccepted]:
        await refuse_if_backpressured(app, services)
        limits = services.settings.limits
        expire_at = checked_bounds(data, limits.max_recipients_per_publish, clock.now())
        recipients, token_providers = _recipients(data, services)
        n = data.notification
        overrides = data.providers or ProviderOverrides()
        targeted = await _targeted(app, services, token_providers)
        now = clock.now()
        _render_checked(n, overrides, targeted, now)
        request = {
            "recipients": recipients,
            "notification": msgspec.to_builtins(n),
            "providers": msgspec.to_builtins(overrides),
        }
        pub, created = await services.publishes.admit(
            app.id,
            request,
            idempotency_key=data.idempotency_key,
            expire_at=expire_at,
            window_seconds=limits.idempotency_window_hours * 3600,
            plan=await _inline_plan(app, services, recipients),
        )
        # A publish closed in its own commit (nobody to reach) queued no job: waking the workers
        # would only make each run an empty claim (a sixth of the CPU of bench admission).
        if created and services.engine is not None and pub.status in OPEN_PUBLISH:
            services.engine.notify()
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(PublishAccepted(pub.id, pub.status), status_code=HTTP_202_ACCEPTED, headers=headers)

    @get("/publishes", summary="Publishes, newest first", responses=error_responses(400, 401))
    async def list_publishes(
        self,
        app: AppDep,
        services: ServicesDep,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> PublishPage:
        pubs, nxt = await services.publishes.list_publishes(
            app.id, cursor=cursors.decode_one(cursor), limit=page_limit(limit, services.settings)
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

    @post(
        "/publishes/{publish_id:str}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel a publish: nothing not yet sent is sent",
        responses=error_responses(401, 404, 409),
    )
    async def cancel_publish(
        self, publish_id: FromPath[str], app: AppDep, services: ServicesDep
    ) -> PublishOut:
        pub, changed = await services.publishes.cancel(app.id, publish_id)
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
                    reason=r.error_code if r.status in POLICY_STATUSES else None,
                    release_at=rfc3339(r.release_at) if r.status == DeliveryStatus.HELD else None,
                )
                for r in rows
            ],
            cursors.encode_next(nxt),
        )
