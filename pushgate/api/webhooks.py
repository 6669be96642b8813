"""Webhook routes (docs/webhooks.md): an app's endpoints for signed events.

Reads need ``read`` (no secret is ever shown after creation); writes need ``admin`` (the
default for writes in ``domain/scopes.py``): a webhook receives the app's delivery data.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pushgate.api.errors import bad_request, error_responses, not_found
from pushgate.api.services import AppDep, ServicesDep
from pushgate.config import Settings
from pushgate.domain.timefmt import rfc3339
from pushgate.domain.urls import UrlRefused, check_target
from pushgate.domain.webhooks import ALL, EVENT_TYPES
from pushgate.store.webhooks import Webhook

MAX_WEBHOOKS = 10
EventName = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
Events = Annotated[list[EventName], msgspec.Meta(min_length=1, max_length=16)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    #: Event types (``publish.finished``, ``delivery.failed``, ``device.invalid_token``) or ``*``.
    events: Events = msgspec.field(default_factory=lambda: [ALL])


class WebhookPatch(msgspec.Struct, forbid_unknown_fields=True):
    url: Url | None = None
    events: Events | None = None
    #: ``true`` re-enables a disabled endpoint: its failure streak is cleared and its waiting
    #: events go out at once.
    enabled: bool | None = None


class WebhookOut(msgspec.Struct, omit_defaults=True):
    id: str
    url: str
    events: list[str]
    enabled: bool
    #: Failed posts in a row (reset by a success).
    failures: int
    #: Events waiting to be posted.
    pending: int
    created_at: str
    disabled_at: str | None = None
    disabled_reason: str | None = None
    last_success_at: str | None = None


class WebhookCreated(msgspec.Struct):
    webhook: WebhookOut
    #: The HMAC key of ``X-Pushgate-Signature``: shown only in this answer.
    secret: str


class WebhookSecret(msgspec.Struct):
    secret: str


class WebhookList(msgspec.Struct):
    items: list[WebhookOut]


def webhook_out(w: Webhook) -> WebhookOut:
    return WebhookOut(
        id=w.id,
        url=w.url,
        events=w.events.split(),
        enabled=w.enabled,
        failures=w.failures,
        pending=w.pending,
        created_at=rfc3339(w.created_at) or "",
        disabled_at=rfc3339(w.disabled_at),
        disabled_reason=w.disabled_reason,
        last_success_at=rfc3339(w.last_success_at),
    )


def _checked_url(url: str, settings: Settings) -> str:
    allow = settings.outbound.allowance(settings.devices.allow_loopback_endpoints)
    try:
        check_target(url, allow)
    except UrlRefused as exc:
        raise bad_request(f"url: {exc}") from None
    return url


def _checked_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - EVENT_TYPES - {ALL})
    if unknown:
        raise bad_request(
            f"events: unknown event type {unknown[0]!r}; use {', '.join(sorted(EVENT_TYPES))} or {ALL!r}"
        )
    return events


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]

    @post("", status_code=HTTP_201_CREATED, summary="Add a webhook", responses=error_responses(400, 401, 409))
    async def create(self, data: JSONBody[WebhookIn], app: AppDep, services: ServicesDep) -> WebhookCreated:
        url = _checked_url(data.url, services.settings)
        events = _checked_events(data.events)
        if len(await services.webhooks.all_of(app.id)) >= MAX_WEBHOOKS:
            raise bad_request(f"an app has at most {MAX_WEBHOOKS} webhooks: delete one first")
        hook, secret = await services.webhooks.create(app.id, url, events)
        return WebhookCreated(webhook_out(hook), secret)

    @get("", summary="The app's webhooks", responses=error_responses(401))
    async def list_webhooks(self, app: AppDep, services: ServicesDep) -> WebhookList:
        return WebhookList([webhook_out(w) for w in await services.webhooks.all_of(app.id)])

    @get("/{webhook_id:str}", summary="One webhook", responses=error_responses(401, 404))
    async def get_webhook(self, webhook_id: FromPath[str], app: AppDep, services: ServicesDep) -> WebhookOut:
        hook = await services.webhooks.get(app.id, webhook_id)
        if hook is None:
            raise not_found("webhook", webhook_id)
        return webhook_out(hook)

    @patch(
        "/{webhook_id:str}", summary="Change or re-enable a webhook", responses=error_responses(400, 401, 404)
    )
    async def update(
        self, webhook_id: FromPath[str], data: JSONBody[WebhookPatch], app: AppDep, services: ServicesDep
    ) -> WebhookOut:
        hook = await services.webhooks.update(
            app.id,
            webhook_id,
            url=None if data.url is None else _checked_url(data.url, services.settings),
            events=None if data.events is None else _checked_events(data.events),
            enabled=data.enabled,
        )
        if hook is None:
            raise not_found("webhook", webhook_id)
        return webhook_out(hook)

    @post(
        "/{webhook_id:str}/secret",
        status_code=HTTP_200_OK,
        summary="Replace a webhook's signing secret",
        responses=error_responses(401, 404),
    )
    async def rotate(self, webhook_id: FromPath[str], app: AppDep, services: ServicesDep) -> WebhookSecret:
        secret = await services.webhooks.rotate_secret(app.id, webhook_id)
        if secret is None:
            raise not_found("webhook", webhook_id)
        return WebhookSecret(secret)

    @delete("/{webhook_id:str}", status_code=HTTP_204_NO_CONTENT, responses=error_responses(401, 404))
    async def remove(self, webhook_id: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        if not await services.webhooks.delete(app.id, webhook_id):
            raise not_found("webhook", webhook_id)
