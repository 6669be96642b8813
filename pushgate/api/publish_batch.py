"""``POST /v1/publish/batch``, and the admission checks it shares with ``POST /v1/publish``.

For a backend that sends one notification to one user thousands of times a second, a request
and a commit per publish is most of the cost. Each item is validated exactly as ``POST
/v1/publish`` validates its body (by the same functions, defined here: recipients, times,
policy fields, rendering and sizes) and answered with what that route would answer (a publish
id, or its error object), so a client can move between the two routes without new rules.
Invalid items don't hold back the valid ones: those are admitted together, in one transaction.

Items are decoded one by one (the body's schema says each is an object) so a bad item becomes
that item's error rather than a 400 for the whole request.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from pushgate.api.common import check_channels, normalize_token, provider_spec
from pushgate.api.errors import ApiError, bad_request, error_responses
from pushgate.api.publish_content import TemplateCache, load_template, variants_checked
from pushgate.api.publish_realtime import with_realtime
from pushgate.api.publish_tags import publish_tags, with_dry_run
from pushgate.api.schemas import (
    ChannelRecipient,
    DeviceRecipient,
    ErrorInfo,
    PublishBatchIn,
    PublishBatchItem,
    PublishBatchOut,
    PublishIn,
    TokenRecipient,
    UserRecipient,
)
from pushgate.api.schemas_filter import FilterRecipient
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain import clock
from pushgate.domain.filters import FilterError, RequestBudget
from pushgate.domain.filters import parse as parse_filter
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.personalize import Personalized
from pushgate.domain.planning import deadline
from pushgate.domain.registry import valid_timezone
from pushgate.domain.rendering import NotificationError, oversize, render_for
from pushgate.domain.status import PublishStatus
from pushgate.domain.timefmt import parse_rfc3339
from pushgate.providers import registry
from pushgate.store.audience import SMALL_KINDS
from pushgate.store.publishes import InlinePlan
from pushgate.store.publishes.admission import NewPublish
from pushgate.store.publishes.client_ids import IdConflict

#: The publish's policy fields, stored as given under ``request["policy"]`` for the planner.
_POLICY_FIELDS = ("deliver_between", "local_time", "no_timezone", "priority", "category", "frequency_caps")
#: Publishes in these statuses have work for the workers now (a ``scheduled`` one has not).
WORK_NOW = (PublishStatus.ACCEPTED.value, PublishStatus.DISPATCHING.value)


def stored_recipients(data: PublishIn, services: ServicesDep) -> tuple[list[dict[str, Any]], set[str]]:
    """Normalise the recipients for storage; returns them and the providers they name directly."""
    out: list[dict[str, Any]] = []
    direct: set[str] = set()
    budget = RequestBudget()  # one for all the filters of the list (docs/filters.md, Limits)
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
        elif isinstance(r, FilterRecipient):
            try:
                parse_filter(r.filter, f"{where}.filter", budget)
            except FilterError as exc:
                raise bad_request(str(exc)) from None
            out.append({"type": "filter", "filter": r.filter})
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


def parse_time_field(value: str, field: str) -> float:
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise bad_request(f"{field}: not an RFC 3339 time: {exc}") from None


def checked_bounds(data: PublishIn, max_recipients: int, now: float) -> tuple[float | None, float | None]:
    """The recipient count, ``expire_at`` and ``send_at`` of one publish body checked (400
    otherwise); ``(expire_at, send_at)`` as UNIX times. A past ``send_at`` is allowed (it means
    now); an ``expire_at`` must be ahead of both the clock and ``send_at``."""
    if len(data.recipients) > max_recipients:
        raise bad_request(
            f"recipients: at most {max_recipients} entries per publish "
            "(limits.max_recipients_per_publish); use a channel for large audiences"
        )
    send_at = parse_time_field(data.send_at, "send_at") if data.send_at is not None else None
    if data.expire_at is None:
        return None, send_at
    expire_at = parse_time_field(data.expire_at, "expire_at")
    if expire_at <= now:
        raise bad_request("expire_at: is in the past")
    if send_at is not None and expire_at <= send_at:
        raise bad_request("expire_at: must be after send_at (it would expire before it starts)")
    return expire_at, send_at


def _seconds(time_of_day: str) -> int:
    """``HH:MM[:SS]`` (the schema checked its shape) as seconds after midnight."""
    h, m, *sec = (int(x) for x in time_of_day.split(":"))
    return h * 3600 + m * 60 + (sec[0] if sec else 0)


def policy_of(data: PublishIn) -> dict[str, Any] | None:
    """The publish's policy fields checked (400 naming the field) and as JSON builtins, for
    ``request["policy"]``: exactly the fields given, under their own names; None when none is.

    What the schema cannot say is checked here: one of ``deliver_between``/``local_time``, a
    window that is not empty, and a ``no_timezone`` that means something and has a window to
    apply to. (Whether ``category`` exists is the category store's check, not this one.)
    """
    window = data.deliver_between
    if window is not None and data.local_time is not None:
        raise bad_request("deliver_between: give deliver_between or local_time, not both")
    if window is not None and _seconds(window.start) == _seconds(window.end):
        raise bad_request("deliver_between.end: equals start (an empty window)")
    if data.no_timezone is not None:
        if window is None and data.local_time is None:
            raise bad_request("no_timezone: applies only with deliver_between or local_time")
        if data.no_timezone not in ("send_now", "skip") and not valid_timezone(data.no_timezone):
            raise bad_request(
                "no_timezone: 'send_now', 'skip' or an IANA time zone (e.g. Europe/Berlin), "
                f"not {data.no_timezone!r}"
            )
    policy: dict[str, Any] = {}
    for name in _POLICY_FIELDS:
        value = getattr(data, name)
        if name == "frequency_caps" and value is not None:
            # Every field written out, defaults included: the planner needs no schema to read it.
            value = [msgspec.structs.asdict(cap) for cap in value]
        if value is not None:
            policy[name] = msgspec.to_builtins(value)
    return policy or None


async def targeted_providers(app: AppDep, services: ServicesDep, token_providers: set[str]) -> list[str]:
    """Providers this publish may reach: those the app has credentials for, plus raw-token ones."""
    # Up to a second old: only the size checks depend on it; the planner reads it afresh.
    configured = await services.pool.available(app.id, app.name, max_age=1.0)
    return sorted((configured | token_providers) & set(registry.names()))


def render_checked(
    n: Notification, overrides: ProviderOverrides, targeted: list[str], now: float
) -> list[str] | None:
    """Render for every targeted provider that has a payload, answering 400 for what cannot be
    sent. Returns the providers that have one when only some do (no unified content, native
    payloads for some: the others' devices are ``skipped``, not the publish refused), else
    None."""
    if not n.has_content() and not msgspec.to_builtins(overrides):
        raise bad_request(
            "notification: give a title, body, data or content_available (or a provider-native override)"
        )
    only: list[str] | None = None
    if not n.has_content():
        native = [p for p in targeted if overrides.for_provider(p) is not None]
        if targeted and not native:
            raise bad_request(
                "notification: give a title, body, data or content_available, or a native payload "
                f"in providers for a provider this publish can reach ({', '.join(targeted)})"
            )
        if len(native) < len(targeted):
            only = targeted = native
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
    return only


def admission_request(
    data: PublishIn,
    recipients: list[dict[str, Any]],
    targeted: list[str],
    now: float,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The publish's stored request, every check of its content passed (400 otherwise): the
    single and the batch route store the same thing. ``policy`` and ``payload_providers``
    appear only when they say something; ``template`` (:func:`load_template`'s copy) and
    ``localizations`` only when the publish has them (its content is then rendered per device)."""
    overrides = data.providers or ProviderOverrides()
    policy = policy_of(data)
    request: dict[str, Any] = {
        "recipients": recipients,
        "notification": msgspec.to_builtins(data.notification),
        "providers": msgspec.to_builtins(overrides),
    }
    if data.template is not None:
        if template is None:
            raise bad_request("template: this route cannot use templates")
        request["template"] = template
    if data.localizations:
        request["localizations"] = data.localizations
    personal = Personalized.from_request(request)
    if personal is None:
        payload_providers = render_checked(data.notification, overrides, targeted, now)
    else:
        payload_providers = variants_checked(personal, targeted, now, render_checked)
    if policy is not None:
        request["policy"] = policy
    if payload_providers is not None:
        request["payload_providers"] = payload_providers
    return request


async def check_categories(app: AppDep, services: ServicesDep, data: PublishIn) -> None:
    """400 for a ``category`` (of the publish or of one of its caps) the app does not define."""
    named = [("category", data.category)] if data.category else []
    named += [
        (f"frequency_caps[{i}].category", c.category)
        for i, c in enumerate(data.frequency_caps or [])
        if c.category
    ]
    for field, category in named:
        if await services.policies.category_default(app.id, category) is None:
            raise bad_request(
                f"{field}: unknown category {category!r}; define it with POST /v1/categories "
                "or [policy] categories in the config"
            )


async def inline_plan(
    app: AppDep,
    services: ServicesDep,
    recipients: list[dict[str, Any]],
    request: dict[str, Any],
    expire_at: float | None,
) -> InlinePlan | None:
    """How admission may plan this publish itself (``engine.plan_at_admission``), or None for a
    long list: it goes to the planner, page by page (so does one whose users or channels turn out
    to reach more devices). Its policy applies there as in the planner."""
    e = services.settings.engine
    if len(recipients) > e.plan_at_admission or any(r["type"] not in SMALL_KINDS for r in recipients):
        return None
    if request.get("realtime"):  # its plan job reaches the sessions first (engine/realtime_stage.py)
        return None
    # The TTL counts from now: the publish is due now (a scheduled one is never planned here).
    due_by = deadline(request, clock.now(), None, expire_at)
    policy = await services.policy_loader.for_request(app.id, request, due_by)
    if policy is not None and policy.publish.caps_for(policy.app):
        # Caps are counted by the planner, one page per transaction: admission's transaction
        # plans many publishes, and cap rows taken for several of them in one transaction would
        # be locked out of their global order (two admissions could deadlock on PostgreSQL).
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
        policy=policy,
    )


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
        self._templates: TemplateCache = {}
        self.now = clock.now()

    async def check(self, raw: dict[str, Any]) -> NewPublish:
        """The item ready to store; raises :class:`ApiError` or :class:`msgspec.ValidationError`."""
        data = msgspec.convert(raw, PublishIn)
        expire_at, send_at = checked_bounds(data, self.limits.max_recipients_per_publish, self.now)
        recipients, direct = stored_recipients(data, self.services)
        key = frozenset(direct)
        if key not in self._targeted:
            self._targeted[key] = await targeted_providers(self.app, self.services, set(direct))
        tags = publish_tags(data, send_at, self.now)
        template = await load_template(self.app, self.services, data, self._templates)
        request = with_dry_run(
            admission_request(data, recipients, self._targeted[key], self.now, template), tags
        )
        request = with_realtime(request, data, self.services.settings)
        await check_categories(self.app, self.services, data)
        if send_at is not None and send_at > self.now:  # scheduled: planned when it is due
            return NewPublish(request, data.idempotency_key, expire_at, None, send_at, tags)
        plan = await inline_plan(self.app, self.services, recipients, request, expire_at)
        return NewPublish(request, data.idempotency_key, expire_at, plan, send_at, tags)


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
        for (i, _), got in zip(valid, admitted, strict=True):
            if isinstance(got, IdConflict):
                items[i] = PublishBatchItem(error=ErrorInfo("invalid_request", str(got)))
            else:
                items[i] = PublishBatchItem(
                    publish_id=got[0].public_id, status=got[0].status, replayed=not got[1]
                )
        done = [got for got in admitted if not isinstance(got, IdConflict)]
        if services.engine is not None and any(c and p.status in WORK_NOW for p, c in done):
            services.engine.notify()
        admitted_n = len(done)
        return PublishBatchOut(items=items, admitted=admitted_n, rejected=len(items) - admitted_n)
