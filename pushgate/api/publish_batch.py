"""``POST /v1/publish/batch``: many publishes (each its own recipients) in one request and one commit.

For a backend that sends one notification to one user thousands of times a second, a request
and a commit per publish is most of the cost. Each item is validated exactly as ``POST
/v1/publish`` validates its body and answered with what that route would answer (a publish id,
or its error object), so a client can move between the two routes without new rules. Invalid
items don't hold back the valid ones: those are admitted together, in one transaction.

Items are decoded one by one (the body's schema says each is an object) so a bad item becomes
that item's error rather than a 400 for the whole request.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from pushgate.api.errors import ApiError, error_responses
from pushgate.api.publishes import (
    _inline_plan,
    _recipients,
    _render_checked,
    _targeted,
    checked_bounds,
    refuse_if_backpressured,
)
from pushgate.api.schemas import (
    ErrorInfo,
    PublishBatchIn,
    PublishBatchItem,
    PublishBatchOut,
    PublishIn,
)
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain import clock
from pushgate.domain.notification import ProviderOverrides
from pushgate.store.publishes.admission import NewPublish


def _schema_error(exc: msgspec.ValidationError) -> ErrorInfo:
    """The error object ``POST /v1/publish`` answers for a body msgspec refuses: Litestar's
    message, ``<field>: <why>`` (api/errors.py), without details."""
    why, _, where = str(exc).partition(" - at `$")
    key = where.rstrip("`").lstrip(".") or "body"
    return ErrorInfo("invalid_request", f"{key}: {why}")


class _Validator:
    """Checks the items of one batch as the single route checks its body; what the single route
    looks up per request (the app's configured providers) is looked up once per batch."""

    def __init__(self, app: AppDep, services: ServicesDep) -> None:
        self.app = app
        self.services = services
        self.limits = services.settings.limits
        self._targeted: dict[frozenset[str], list[str]] = {}
        self.now = clock.now()

    async def check(self, raw: dict[str, Any]) -> NewPublish:
        """The item ready to store; raises :class:`ApiError` or :class:`msgspec.ValidationError`."""
        data = msgspec.convert(raw, PublishIn)
        expire_at = checked_bounds(data, self.limits.max_recipients_per_publish, self.now)
        recipients, direct = _recipients(data, self.services)
        overrides = data.providers or ProviderOverrides()
        key = frozenset(direct)
        if key not in self._targeted:
            self._targeted[key] = await _targeted(self.app, self.services, set(direct))
        _render_checked(data.notification, overrides, self._targeted[key], self.now)
        request = {
            "recipients": recipients,
            "notification": msgspec.to_builtins(data.notification),
            "providers": msgspec.to_builtins(overrides),
        }
        plan = await _inline_plan(self.app, self.services, recipients)
        return NewPublish(request, data.idempotency_key, expire_at, plan)


class PublishBatchController(Controller):
    path = "/publish/batch"
    tags = ["publishes"]

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Publish up to 1000 notifications, each to its own recipients, in one request",
        description="Each item of `publishes` is exactly a `POST /v1/publish` body and is validated "
        "the same way. The answer has one entry per item, in order: `publish_id` and `status` "
        "(with `replayed: true` when an idempotency key gave back an earlier publish), or the "
        "`error` object `POST /v1/publish` would have answered. Valid items are admitted even when "
        "others are invalid, all in one transaction. An idempotency key repeated inside one batch "
        "gives the later item the earlier item's publish. Backpressure (429) refuses the whole "
        "request, before anything is validated or stored.",
        responses=error_responses(400, 401, 413, 429),
    )
    async def publish_batch(
        self, data: JSONBody[PublishBatchIn], app: AppDep, services: ServicesDep
    ) -> PublishBatchOut:
        await refuse_if_backpressured(app, services)
        validator = _Validator(app, services)
        items: list[PublishBatchItem] = []
        valid: list[tuple[int, NewPublish]] = []
        for i, raw in enumerate(data.publishes):
            try:
                valid.append((i, await validator.check(raw)))
            except msgspec.ValidationError as exc:
                items.append(PublishBatchItem(error=_schema_error(exc)))
            except ApiError as exc:
                items.append(PublishBatchItem(error=ErrorInfo(exc.code, exc.message, exc.details)))
            else:
                items.append(PublishBatchItem())
        admitted = await services.publishes.admit_many(
            app.id,
            [item for _, item in valid],
            window_seconds=services.settings.limits.idempotency_window_hours * 3600,
        )
        for (i, _), (pub, created) in zip(valid, admitted, strict=True):
            items[i] = PublishBatchItem(publish_id=pub.id, status=pub.status, replayed=not created)
        if any(created for _, created in admitted) and services.engine is not None:
            services.engine.notify()
        return PublishBatchOut(items=items, admitted=len(valid), rejected=len(items) - len(valid))
