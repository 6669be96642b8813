"""``/apps/{appId}/push/publish``, ``batch/publish``, ``publish/{id}/status``, ``scheduled/{id}``.

A PublishRequest becomes a native ``PublishIn`` and goes through ``admit_publish``: the same
validation, idempotency (``publishId`` is the native client publish id), scheduling
(``notBeforeMs`` → ``send_at``), expiry, planning and delivery as ``POST /v1/publish``. The
publish API is asynchronous in Sockudo too: ``?mode=sync`` / ``sync: true`` are accepted and
answered with ``X-Sockudo-Forced-Async: publish-api-is-async``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from pushgate.api.compat.sockudo import auth
from pushgate.api.compat.sockudo.registry import not_found, services_of
from pushgate.api.compat.sockudo.shapes import (
    PROVIDERS,
    Base,
    PushRecipient,
    decode,
    native_token,
    not_supported,
)
from pushgate.api.errors import ApiError, bad_request
from pushgate.api.publish_batch import _Validator
from pushgate.api.publishes import admit_publish
from pushgate.api.schemas import MAX_PUBLISH_BATCH, PublishIn
from pushgate.api.services import Services
from pushgate.domain.status import PublishStatus
from pushgate.domain.timefmt import rfc3339
from pushgate.store.apps import App
from pushgate.store.publishes import Publish

#: Sockudo's limit on one publish's targets.
MAX_TARGETS = 1024
FORCED_ASYNC = {"X-Sockudo-Forced-Async": "publish-api-is-async"}


class Target(msgspec.Struct):
    """A PublishTarget: tagged by ``type``, its fields snake_case (serde tags only the variant)."""

    type: str
    channel: str | None = None
    client_id: str | None = None
    device_id: str | None = None
    topic: str | None = None
    provider: str | None = None
    condition: str | None = None
    filter: Any = None
    recipient: PushRecipient | None = None


class Payload(Base):
    template_id: str | None = None
    template_data: Any = None
    title: str | None = None
    body: str | None = None
    icon: str | None = None
    sound: str | None = None
    collapse_key: str | None = None
    # The seed document's ``payload.data``.
    data: Any = None


class Override(Base):
    provider: str
    payload: dict[str, Any]


class PublishRequest(Base):
    payload: Payload
    publish_id: str | None = None
    recipients: list[Target] = msgspec.field(default_factory=list)
    provider_overrides: list[Override] = msgspec.field(default_factory=list)
    sync: bool = False
    not_before_ms: int | None = None
    expires_at_ms: int | None = None
    # The seed document's spellings.
    idempotency_key: str | None = msgspec.field(default=None, name="idempotency_key")
    run_at: str | None = msgspec.field(default=None, name="run_at")


def _native_kind(provider: str | None, kind: str) -> str:
    native = {"fcm": "fcm", "hms": "hms"}.get(provider or "")
    if native is None:
        raise not_supported(f"a {kind} recipient for provider {provider!r} (only fcm and hms have them)")
    return f"{native}_{kind}"


def _recipient(t: Target) -> dict[str, Any]:
    match t.type:
        case "channel" if t.channel:
            return {"type": "channel", "channel": t.channel}
        case "client" if t.client_id:
            return {"type": "user", "user": t.client_id}
        case "device" if t.device_id:
            return {"type": "device", "device_id": t.device_id}
        case "recipient" if t.recipient is not None:
            provider, token = native_token(t.recipient)
            return {"type": "token", "provider": provider, "token": token}
        case "providerTopic" if t.topic:
            return {"type": _native_kind(t.provider, "topic"), "topic": t.topic}
        case "providerCondition" if t.condition:
            return {"type": _native_kind(t.provider, "condition"), "condition": t.condition}
        case "indexedFilter" if isinstance(t.filter, dict):
            return {"type": "filter", "filter": t.filter}
        case "registeredTopic" | "userTopic":
            raise not_supported(f"a {t.type} recipient")
    raise bad_request(f"recipients: invalid {t.type!r} target (missing or empty field)")


def _strings(raw: Any, what: str) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request(f"{what}: must be a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in raw.items()}


def _overrides(items: list[Override]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for o in items:
        provider = PROVIDERS.get(o.provider)
        if provider in ("fcm", "hms"):
            out[provider] = {"message": o.payload.get("message", o.payload)}
        elif provider in ("apns", "webpush"):
            out[provider] = {"payload": o.payload}
        else:
            raise not_supported(f"a providerOverride for {o.provider!r}")
    return out or None


def _time(ms: int | None, what: str) -> str | None:
    if ms is None:
        return None
    if not 0 <= ms < 253402300800000:
        raise bad_request(f"{what}: out of range")
    return rfc3339(ms / 1000)


def publish_in(req: PublishRequest) -> PublishIn:
    """The native publish of a Sockudo PublishRequest (400 when it is not a valid one)."""
    if not req.recipients:
        raise bad_request("recipients: must contain at least one target")
    if len(req.recipients) > MAX_TARGETS:
        raise bad_request(f"recipients: too many targets (at most {MAX_TARGETS})")
    p = req.payload
    data = {
        **(_strings(p.data, "payload.data") or {}),
        **(_strings(p.template_data, "payload.templateData") or {}),
    }
    notification = {
        k: v
        for k, v in {
            "title": p.title,
            "body": p.body,
            "image": p.icon,
            "sound": p.sound,
            "collapse_key": p.collapse_key,
            "data": data or None,
        }.items()
        if v is not None
    }
    body: dict[str, Any] = {
        "recipients": [_recipient(t) for t in req.recipients],
        "notification": notification,
    }
    if p.template_id:
        body["template"] = {
            "id": p.template_id,
            "data": p.template_data if isinstance(p.template_data, dict) else {},
        }
    overrides = _overrides(req.provider_overrides)
    if overrides:
        body["providers"] = overrides
    if req.publish_id:
        body["publish_id"] = req.publish_id
    elif req.idempotency_key:
        body["idempotency_key"] = req.idempotency_key
    send_at = _time(req.not_before_ms, "notBeforeMs") or req.run_at
    if send_at:
        body["send_at"] = send_at
    expire_at = _time(req.expires_at_ms, "expiresAtMs")
    if expire_at:
        body["expire_at"] = expire_at
    try:
        return msgspec.convert(body, PublishIn)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid PublishRequest: {exc}") from None


#: Native publish status → Sockudo's PublishLifecycleState label.
STATES = {
    PublishStatus.SCHEDULED: "accepted",
    PublishStatus.ACCEPTED: "accepted",
    PublishStatus.DISPATCHING: "dispatching",
    PublishStatus.FAILED: "failed",
    PublishStatus.EXPIRED: "expired",
    PublishStatus.CANCELLED: "cancelled",
}


def state_of(pub: Publish) -> str:
    if pub.status != PublishStatus.COMPLETED:
        return STATES.get(PublishStatus(pub.status), pub.status)
    c = pub.counts
    bad = c.get("failed", 0) + c.get("invalid_token", 0) + c.get("expired", 0)
    if bad == 0:
        return "succeeded"
    return "partially_succeeded" if c.get("sent", 0) else "failed"


def counters(c: dict[str, int]) -> dict[str, int]:
    """Sockudo's counters from the native counts (docs/compat.md: the mapping)."""
    failed = c.get("failed", 0) + c.get("invalid_token", 0)
    return {
        "planned": c.get("planned", 0),
        "dispatched": c.get("sent", 0) + failed,
        "succeeded": c.get("sent", 0),
        "failed": failed,
        "expired": c.get("expired", 0),
        "retryScheduled": c.get("retrying", 0),
        "retryAttempted": 0,
        "deadLettered": 0,
    }


async def _accept(app: App, services: Services, req: PublishRequest) -> dict[str, Any]:
    pub, created = await admit_publish(app, services, publish_in(req))
    if not created:
        pub = await services.publishes.get(app.id, pub.id) or pub
    expected = pub.counts.get("planned", 0) if pub.counts else 0
    status = "accepted" if created else state_of(pub)
    return {
        "publishId": pub.public_id,
        "status": status,
        "expectedRecipients": expected,
        "fanoutRegime": "fastPath",
        "renderedPayloads": [],
        # The seed document reads ``response.publish_id``.
        "publish_id": pub.public_id,
    }


@post("/publish", status_code=HTTP_202_ACCEPTED)
async def publish(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
    signed = await auth.authorize(request, app_id)
    req: PublishRequest = decode(signed.body, PublishRequest, "PublishRequest")
    out = await _accept(signed.app, services_of(request), req)
    forced = req.sync or signed.params.get("mode") == "sync"
    return Response(out, status_code=HTTP_202_ACCEPTED, headers=FORCED_ASYNC if forced else None)


@post("/batch/publish", status_code=HTTP_202_ACCEPTED)
async def batch_publish(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    reqs: list[PublishRequest] = decode(signed.body, list[PublishRequest], "batch of PublishRequest")
    if not reqs:
        raise bad_request("batch: at least one PublishRequest")
    if len(reqs) > MAX_PUBLISH_BATCH:
        raise bad_request(f"batch: at most {MAX_PUBLISH_BATCH} PublishRequests (as POST /v1/publish/batch)")
    # Validated all first: like Sockudo's, the batch stops at an invalid item, but here nothing of
    # it is admitted then (no half-admitted batch to untangle). Every check admission makes
    # (times, templates, rendering, sizes, categories) runs on every item before the first is
    # admitted, as POST /v1/publish/batch checks its items.
    native = [publish_in(r) for r in reqs]
    services = services_of(request)
    validator = _Validator(signed.app, services)
    for i, data in enumerate(native):
        try:
            await validator.check(msgspec.to_builtins(data))
        except ApiError as exc:
            raise ApiError(
                exc.status, exc.code, f"batch[{i}]: {exc.message}", exc.details, exc.headers
            ) from None
    items = []
    for data in native:
        pub, created = await admit_publish(signed.app, services, data)
        items.append(
            {
                "publishId": pub.public_id,
                "status": "accepted" if created else state_of(pub),
                "expectedRecipients": pub.counts.get("planned", 0) if pub.counts else 0,
                "fanoutRegime": "fastPath",
                "renderedPayloads": [],
            }
        )
    return {"items": items}


async def _publish(services: Services, app: App, publish_id: str) -> Publish:
    server = await services.publishes.resolve(app.id, publish_id)
    pub = await services.publishes.get(app.id, server) if server else None
    if pub is None:
        raise not_found("publish status")
    return pub


@get("/publish/{publish_id:str}/status")
async def publish_status(
    request: Request[Any, Any, Any], app_id: FromPath[str], publish_id: FromPath[str]
) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    pub = await _publish(services_of(request), signed.app, publish_id)
    out: dict[str, Any] = {
        "appId": app_id,
        "publishId": pub.public_id,
        "state": state_of(pub),
        "counters": counters(pub.counts),
        "fanoutRegime": "fastPath",
    }
    if pub.error_message:
        out["errorReason"] = pub.error_message
    return out


@delete("/scheduled/{job_id:str}", status_code=HTTP_204_NO_CONTENT)
async def cancel_scheduled(
    request: Request[Any, Any, Any], app_id: FromPath[str], job_id: FromPath[str]
) -> None:
    """Sockudo deletes the job row (and answers 204 for an unknown id too); here the publish
    is cancelled natively, whatever it is still to send."""
    signed = await auth.authorize(request, app_id)
    services = services_of(request)
    server = await services.publishes.resolve(signed.app.id, job_id)
    if server is not None:
        await services.publishes.cancel(signed.app.id, server)


HANDLERS = [publish, batch_publish, publish_status, cancel_scheduled]
