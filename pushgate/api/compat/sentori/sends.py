"""Sentori's sends: ``POST /v1/push/sends`` (and the overview's ``/v1/push/send``), a send's
state, its deliveries, one delivery, and the delivery ack.

A send is one native publish, admitted by ``admit_publish`` (the native validation, policy,
scheduling and idempotency): its targets become native recipients (``user:`` a user, ``topic:``
a channel, spTokens, installIds and native tokens the devices they name, ``traits`` and
``audience`` a filter), ``sendAt`` its ``send_at``, ``campaignId`` its ``campaign``,
``preferenceCategory`` its ``category``, ``templateId``/``audienceTag`` its labels. The send id
is the publish id; each recipient's delivery id is its native delivery record's key. An ack is a
native ``delivered`` receipt on that record.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from pushgate.api.common import page_limit
from pushgate.api.compat.sentori import resolve
from pushgate.api.compat.sentori.common import app_of, body_as, services_of
from pushgate.api.compat.sentori.mapping import (
    TargetError,
    Targets,
    audience_filter,
    device_id_of,
    notification_of,
    split_delivery_id,
    trait_filter,
)
from pushgate.api.compat.sentori.views import delivery_view, receipt_view, send_view, ticket_view
from pushgate.api.errors import ApiError
from pushgate.api.publishes import admit_publish
from pushgate.api.schemas import PublishIn
from pushgate.api.services import Services
from pushgate.domain.receipts import ReceiptEvent
from pushgate.domain.scopes import Scope
from pushgate.store.apps import App
from pushgate.store.delivery_lookup import deliveries_by_key, receipt_counts
from pushgate.store.publishes import Publish, Receipt, ReceiptResult

#: Explicit ids (or native tokens) one send may list, as Sentori's ``MAX_EXPLICIT``.
MAX_EXPLICIT = 1000
#: Per-recipient ids a send's answer lists (above: ``sendIdsOmitted``), as Sentori's.
MAX_LISTED_IDS = 100


class SendBody(msgspec.Struct, rename="camel"):
    """The union of the overview's send (``to``, ``title``, ``body``, ``data``, ``options``)
    and the current one (``spTokens``, ``nativeTokens``, ``topic``, ``appUserId``, ``traits``,
    ``audience``, ``payload``); unknown fields are ignored, as Sentori's server does."""

    to: str | list[str] | dict[str, Any] | None = None
    sp_tokens: list[str] | None = None
    token_ids: list[str] | None = None
    native_tokens: list[str] | None = None
    topic: str | None = None
    app_user_id: str | None = None
    traits: dict[str, Any] | None = None
    audience: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    title: str | None = None
    body: str | None = None
    data: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    idempotency_key: str | None = None
    campaign_id: str | None = None
    template_id: str | None = None
    template_data: dict[str, Any] | None = None
    audience_tag: str | None = None
    preference_category: str | None = None
    send_at: str | None = None


class AckBody(msgspec.Struct, rename="camel"):
    #: Accepted and not stored: the first report of a delivery wins natively, whatever session.
    ack_session_id: str | None = None
    #: Which device's delivery, when the id is a send's (a send to several devices).
    sp_token: str | None = None


def _bad_target(message: str) -> ApiError:
    return ApiError(400, "bad_target", message)


def targets_of(body: SendBody) -> Targets:
    """Every target the body names (400 ``bad_target`` for one that names nothing)."""
    t = Targets()
    try:
        if isinstance(body.to, str):
            t.add_expression(body.to)
        elif isinstance(body.to, list):
            if len(body.to) > MAX_EXPLICIT:
                raise TargetError(f"to: at most {MAX_EXPLICIT} targets in one send")
            for expr in body.to:
                t.add_expression(expr)
        elif isinstance(body.to, dict):
            t.add_object(body.to)
        ids = (body.sp_tokens or []) + (body.token_ids or [])
        if len(ids) > MAX_EXPLICIT or len(body.native_tokens or ()) > MAX_EXPLICIT:
            raise TargetError(f"at most {MAX_EXPLICIT} spTokens and {MAX_EXPLICIT} nativeTokens in one send")
        for handle in ids:
            dev = device_id_of(handle)
            if dev is None:
                raise TargetError(f"spTokens: {handle[:80]!r} is not an spToken (ipt_…)")
            t.device_ids.append(dev)
        t.native_tokens += body.native_tokens or []
        if body.topic is not None:
            t.recipients.append({"type": "channel", "channel": body.topic})
        if body.app_user_id is not None:
            t.recipients.append({"type": "user", "user": body.app_user_id})
        if body.traits is not None:
            t.recipients.append({"type": "filter", "filter": trait_filter(body.traits)})
        if body.audience is not None:
            t.recipients.append({"type": "filter", "filter": audience_filter(body.audience)})
    except TargetError as exc:
        raise _bad_target(str(exc)) from None
    if t.empty():
        raise _bad_target("no target: give to, spTokens, nativeTokens, topic, appUserId, traits or audience")
    return t


async def recipients_of(services: Services, app: App, t: Targets) -> list[dict[str, Any]]:
    """Native recipients: those ``t`` names directly, then each device found (once)."""
    devices = list(t.device_ids)
    for install in t.installs:
        devices += await resolve.by_install(services, app.id, install)
    for token in t.expo_tokens:
        devices += await resolve.by_expo_token(services, app.id, token)
    if t.native_tokens:
        for found in (await resolve.by_native_token(services, app.id, t.native_tokens)).values():
            devices += found
    return t.recipients + [{"type": "device", "device_id": d} for d in dict.fromkeys(devices)]


async def _content(services: Services, app: App, body: SendBody) -> dict[str, Any]:
    """The publish's content and tags: the body's fields over its ``payload``'s."""
    payload = dict(body.payload or {})
    title = body.title if body.title is not None else payload.pop("title", None)
    text = body.body if body.body is not None else payload.pop("body", None)
    payload.pop("title", None), payload.pop("body", None)
    inner = payload.pop("data", None)
    data = {**(inner if isinstance(inner, dict) else {}), **(body.data or {})}
    options = payload.pop("options", None)
    options = {**(options if isinstance(options, dict) else {}), **(body.options or {})}
    for key in ("sound", "badge", "ttl", "collapseKey", "category"):
        if key in payload:
            options.setdefault(key, payload.pop(key))
    if "image" in payload:
        options.setdefault("richMedia", {"imageUrl": payload.pop("image")})
    aps = payload.pop("aps", None)
    data.update(payload)  # the rest of a vendor payload travels as data: nothing is dropped
    out: dict[str, Any] = {"notification": notification_of(title, text, data or None, options)}
    if aps is not None:
        out["providers"] = {"apns": {"payload": {"aps": aps}}}
    labels: dict[str, str] = {}
    if body.template_id is not None:
        labels["templateId"] = body.template_id
        # A stored template of that id renders the send when the send brings no text of its own.
        if title is None and text is None and await _has_template(services, app, body.template_id):
            out["template"] = {"id": body.template_id, "data": body.template_data or {}}
    if body.audience_tag is not None:
        labels["audienceTag"] = body.audience_tag
    if body.preference_category is not None:
        if body.preference_category in await services.policies.categories_of(app.id):
            out["category"] = body.preference_category
        else:  # nobody opted out of a category pushgate has never heard of
            labels["preferenceCategory"] = body.preference_category
    if labels:
        out["labels"] = labels
    if body.campaign_id is not None:
        out["campaign"] = body.campaign_id
    if body.idempotency_key is not None:
        out["idempotency_key"] = body.idempotency_key
    if body.send_at is not None:
        out["send_at"] = body.send_at
    return out


async def _has_template(services: Services, app: App, template_id: str) -> bool:
    try:
        return await services.templates.get(app.id, template_id) is not None
    except ValueError:
        return False


async def admit(services: Services, app: App, raw: dict[str, Any]) -> tuple[Publish, bool]:
    """A native publish body validated as ``POST /v1/publish`` validates it, then admitted."""
    try:
        data = msgspec.convert(raw, PublishIn)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    return await admit_publish(app, services, data)


@post(["/sends", "/send"], status_code=HTTP_202_ACCEPTED, opt={"scope": Scope.PUBLISH})
async def send(request: Request[Any, Any, Any]) -> Response[Any]:
    body = await body_as(request, SendBody)
    services, app = services_of(request), app_of(request)
    targets = targets_of(body)
    content = await _content(services, app, body)
    recipients = await recipients_of(services, app, targets)
    if not recipients:  # an install or token with no device: Sentori's empty send
        empty: dict[str, Any] = {
            "sendId": None,
            "send_ids": [],
            "sendIdsOmitted": False,
            "queued": 0,
            "capped": False,
        }
        return Response({**empty, "tickets": []}, status_code=HTTP_202_ACCEPTED)
    pub, created = await admit(services, app, {"recipients": recipients, **content})
    rows, more = await services.publishes.deliveries(
        app.id, pub.id, status=None, provider=None, cursor=None, limit=MAX_LISTED_IDS
    )
    counted = await services.publishes.get(app.id, pub.id, with_counts=True)
    queued = int(counted.counts.get("planned", 0)) if counted is not None else len(rows)
    tickets = [ticket_view(r) for r in rows]
    answer = {
        "sendId": pub.public_id,
        "send_ids": [t["id"] for t in tickets],
        "sendIdsOmitted": more is not None,
        "queued": queued,
        "capped": False,
        "tickets": tickets,
        "state": pub.status,
    }
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return Response(answer, status_code=HTTP_202_ACCEPTED, headers=headers)


async def _publish(services: Services, app: App, send_id: str) -> Publish:
    pub = await services.publishes.get(app.id, send_id) if send_id.startswith("pub_") else None
    if pub is None:
        raise ApiError(404, "send_not_found", f"no send {send_id[:80]!r}")
    return pub


@get("/sends/{send_id:str}", opt={"scope": Scope.READ})
async def send_status(request: Request[Any, Any, Any], send_id: FromPath[str]) -> Response[Any]:
    services = services_of(request)
    pub = await _publish(services, app_of(request), send_id)
    return Response(send_view(pub, await receipt_counts(services.db, pub.id)), status_code=HTTP_200_OK)


@get("/sends/{send_id:str}/deliveries", opt={"scope": Scope.READ})
async def send_deliveries(
    request: Request[Any, Any, Any],
    send_id: FromPath[str],
    cursor: FromQuery[str | None] = None,
    limit: FromQuery[int | None] = None,
) -> Response[Any]:
    services, app = services_of(request), app_of(request)
    pub = await _publish(services, app, send_id)
    size = page_limit(limit, services.settings)
    rows, nxt = await services.publishes.deliveries(
        app.id, pub.id, status=None, provider=None, cursor=cursor, limit=size
    )
    return Response(
        {"deliveries": [delivery_view(r) for r in rows], "nextCursor": nxt}, status_code=HTTP_200_OK
    )


async def _delivery(services: Services, app: App, ident: str) -> Any:
    key = split_delivery_id(ident)
    found = await deliveries_by_key(services.db, app.id, [key]) if key else {}
    if key is None or key not in found:
        raise ApiError(404, "delivery_not_found", f"no delivery {ident[:120]!r}")
    return found[key]


@get("/deliveries/{delivery_id:str}", opt={"scope": Scope.READ})
async def delivery(request: Request[Any, Any, Any], delivery_id: FromPath[str]) -> Response[Any]:
    row = await _delivery(services_of(request), app_of(request), delivery_id)
    return Response(delivery_view(row), status_code=HTTP_200_OK)


@get("/receipts/{delivery_id:str}", opt={"scope": Scope.READ})
async def receipt(request: Request[Any, Any, Any], delivery_id: FromPath[str]) -> Response[Any]:
    row = await _delivery(services_of(request), app_of(request), delivery_id)
    return Response(receipt_view(row), status_code=HTTP_200_OK)


async def _ack_key(services: Services, app: App, ident: str, body: AckBody) -> tuple[str, str]:
    """The delivery an ack names: a delivery id, or a send id (with ``spToken``, or a send to
    exactly one recipient)."""
    key = split_delivery_id(ident)
    if key is not None:
        return key
    pub = await _publish(services, app, ident)
    if body.sp_token is not None:
        dev = device_id_of(body.sp_token)
        if dev is None:
            raise ApiError(400, "invalid_body", "spToken: not an spToken (ipt_…)")
        return pub.id, dev
    rows, more = await services.publishes.deliveries(
        app.id, pub.id, status=None, provider=None, cursor=None, limit=1
    )
    if not rows:
        raise ApiError(404, "delivery_not_found", f"send {ident[:80]!r} has no delivery yet")
    if more is not None:
        raise ApiError(
            400, "ambiguous_send", "this send reached several devices: ack its delivery id, or give spToken"
        )
    return pub.id, rows[0].recipient_id


@post(
    ["/deliveries/{ident:str}/ack", "/sends/{ident:str}/ack"],
    status_code=HTTP_202_ACCEPTED,
    opt={"scope": Scope.REGISTER},
)
async def ack(request: Request[Any, Any, Any], ident: FromPath[str]) -> Response[Any]:
    raw = await request.body()
    body = await body_as(request, AckBody) if raw.strip() else AckBody()
    services, app = services_of(request), app_of(request)
    publish_id, recipient_id = await _ack_key(services, app, ident, body)
    async with services.db.write() as conn:
        done = await services.publishes.record_receipt(
            conn,
            app.id,
            Receipt(publish_id, recipient_id, ReceiptEvent.DELIVERED, time.time()),
            webhooks=services.webhooks,
        )
    if done.result == ReceiptResult.NOT_FOUND:
        raise ApiError(404, "delivery_not_found", f"no delivery {ident[:120]!r}")
    return Response({"status": "acked"}, status_code=HTTP_202_ACCEPTED)


HANDLERS = [send, send_status, send_deliveries, delivery, receipt, ack]
