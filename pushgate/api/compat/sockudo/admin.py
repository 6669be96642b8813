"""``credentials``, ``templates``, ``deadLetters`` (+ replay) and ``deliveryStatus`` of the
Sockudo push API, each on its native counterpart (docs/compat.md, Sockudo): credential uploads
go through ``upload_credential`` (validated, tried, sealed like ``PUT /v1/credentials``),
templates are native templates, dead letters are native dead letters."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, delete, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from pushgate.api import cursors
from pushgate.api.compat.sockudo import auth
from pushgate.api.compat.sockudo.registry import limit_of, not_found, services_of
from pushgate.api.compat.sockudo.shapes import PROVIDERS, SOCKUDO_PROVIDER, Base, decode, not_supported, page
from pushgate.api.credentials import upload_credential
from pushgate.api.errors import ApiError, bad_request
from pushgate.api.receipts import FUTURE_SKEW_SECONDS
from pushgate.api.templates import stored_body
from pushgate.domain import clock
from pushgate.domain.personalize import TemplateBody
from pushgate.domain.receipts import ReceiptEvent
from pushgate.domain.timefmt import rfc3339
from pushgate.engine.deadletters import replay
from pushgate.store.compat_receipts import record_device_receipt
from pushgate.store.publishes.receipts import ReceiptResult, ReceiptTooEarly
from pushgate.store.templates import Template, TemplateExists

TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$(?!\n)")


def _provider(raw: str) -> str:
    native = PROVIDERS.get(raw)
    if native is None:
        raise bad_request(f"unknown provider {raw!r} (fcm, apns, webPush, hms, wns)")
    return native


def _credential_body(provider: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Sockudo's upload body as the native one (``PUT /v1/credentials/{provider}``)."""

    def need(name: str) -> Any:
        if raw.get(name) in (None, ""):
            raise bad_request(f"{name}: required")
        return raw[name]

    if provider == "fcm":
        sa_json = need("serviceAccountJson")
        if isinstance(sa_json, str):
            try:
                sa_json = msgspec.json.decode(sa_json)
            except msgspec.DecodeError:
                raise bad_request("serviceAccountJson: not JSON") from None
        return {"service_account": sa_json}
    if provider == "apns":
        if raw.get("p12"):
            raise not_supported("an APNs p12 upload (upload the key: teamId, keyId, privateKey)")
        if raw.get("pem"):
            return {
                "certificate_pem": raw["pem"],
                **({"bundle_id": raw["bundleId"]} if raw.get("bundleId") else {}),
            }
        body = {"team_id": need("teamId"), "key_id": need("keyId"), "key": need("privateKey")}
        return {**body, **({"bundle_id": raw["bundleId"]} if raw.get("bundleId") else {})}
    if provider == "webpush":
        body = {"vapid_public_key": need("publicKey"), "vapid_private_key": need("privateKey")}
        return {**body, **({"vapid_subject": raw["subject"]} if raw.get("subject") else {})}
    if provider == "hms":
        return {"app_id": need("hmsAppId"), "client_secret": need("clientSecret")}
    return {"package_sid": need("packageSid"), "client_secret": need("clientSecret")}


@post("/credentials/{provider:str}", status_code=HTTP_201_CREATED)
async def put_credential(
    request: Request[Any, Any, Any], app_id: FromPath[str], provider: FromPath[str]
) -> Any:
    signed = await auth.authorize(request, app_id)
    native = _provider(provider)
    raw = decode(signed.body, dict[str, Any], "credential")
    out = await upload_credential(signed.app, services_of(request), native, _credential_body(native, raw))
    cred = out.credential
    return {
        "app_id": app_id,
        "credential_id": cred.fingerprint,
        "provider": provider,
        "version": cred.version,
    }


@get("/credentials")
async def list_credentials(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    metas = await services_of(request).creds.list_meta(signed.app.id)
    items = [
        {
            "app_id": app_id,
            "credential_id": m.fingerprint,
            "provider": SOCKUDO_PROVIDER.get(m.provider, m.provider),
            "version": m.version,
        }
        for m in metas
    ]
    return page(items, None)


class Locale(Base):
    title: str | None = None
    body: str | None = None
    icon: str | None = None
    sound: str | None = None
    collapse_key: str | None = None


class TemplateIn(Base):
    template_id: str
    default_locale: str
    locales: dict[str, Locale]
    provider_overrides: Any = None


def _template_body(t: TemplateIn) -> dict[str, Any]:
    if t.default_locale not in t.locales:
        raise bad_request(f"defaultLocale: {t.default_locale!r} is not one of locales")
    locales = {
        tag: {
            k: v
            for k, v in {"title": loc.title, "body": loc.body, "image": loc.icon}.items()
            if v is not None
        }
        for tag, loc in t.locales.items()
    }
    try:
        native = msgspec.convert({"locales": locales, "default_locale": t.default_locale}, TemplateBody)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid NotificationTemplate: {exc}") from None
    return stored_body(native)


def template_out(app_id: str, t: Template) -> dict[str, Any]:
    locales = {
        tag: {
            k: v
            for k, v in {"title": c.get("title"), "body": c.get("body"), "icon": c.get("image")}.items()
            if v
        }
        for tag, c in (t.body.get("locales") or {}).items()
    }
    return {
        "appId": app_id,
        "templateId": t.id,
        "defaultLocale": t.body.get("default_locale"),
        "locales": locales,
        "providerOverrides": [],
    }


@post("/templates", status_code=HTTP_201_CREATED)
async def put_template(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    """Sockudo's POST upserts: an existing template gets a new native version."""
    signed = await auth.authorize(request, app_id)
    data: TemplateIn = decode(signed.body, TemplateIn, "NotificationTemplate")
    if data.provider_overrides:
        raise not_supported("providerOverrides in a template")
    body = _template_body(data)
    services = services_of(request)
    if not TEMPLATE_ID.match(data.template_id):
        raise bad_request("templateId: 1-64 of A-Z a-z 0-9 _ . -")
    made: Template | None
    try:
        made = await services.templates.create(signed.app.id, data.template_id, body)
    except TemplateExists:
        made = await services.templates.replace(signed.app.id, data.template_id, body)
    if made is None:  # deleted between the two statements
        raise not_found("template")
    return template_out(app_id, made)


@get("/templates")
async def list_templates(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    return page(
        [template_out(app_id, t) for t in await services_of(request).templates.list(signed.app.id)], None
    )


@get("/templates/{template_id:str}")
async def get_template(
    request: Request[Any, Any, Any], app_id: FromPath[str], template_id: FromPath[str]
) -> Any:
    signed = await auth.authorize(request, app_id)
    found = await services_of(request).templates.get(signed.app.id, template_id, None)
    if found is None:
        raise not_found("template")
    return template_out(app_id, found)


@delete("/templates/{template_id:str}", status_code=HTTP_204_NO_CONTENT)
async def delete_template(
    request: Request[Any, Any, Any], app_id: FromPath[str], template_id: FromPath[str]
) -> None:
    signed = await auth.authorize(request, app_id)
    if not await services_of(request).templates.delete(signed.app.id, template_id):
        raise not_found("template")


def _after(keys: tuple[str, ...] | None) -> tuple[str, str] | None:
    return None if keys is None else (keys[0], keys[1])


def _ms(params: dict[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None:
        return None
    # ASCII digits only (``isdigit`` alone takes ``²``, which ``int`` refuses), at most 16 of them.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 16):
        raise bad_request(f"{name}: must be milliseconds since the epoch")
    return int(raw) / 1000


@get("/deadLetters")
async def dead_letters(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    params = signed.params
    provider = _provider(params["provider"]) if params.get("provider") else None
    since, until = _ms(params, "sinceMs"), _ms(params, "untilMs")
    items, nxt = await services_of(request).publishes.dead_letters(
        signed.app.id,
        provider=provider,
        publish_id=None,
        after=_after(cursors.decode(params.get("cursor"), 2)),
        limit=limit_of(params),
    )
    out = [
        {
            "deadLetterId": cursors.encode(d.publish_id, d.recipient_id),
            "appId": app_id,
            "publishId": d.publish_id,
            "provider": SOCKUDO_PROVIDER.get(d.provider, d.provider),
            "stage": "delivery",
            "key": d.recipient_id,
            "reason": d.error_code or d.error_message or "failed",
            "occurredAtMs": int(d.updated_at * 1000),
            "replayable": True,
        }
        for d in items
        if (since is None or d.updated_at >= since) and (until is None or d.updated_at <= until)
    ]
    return page(out, cursors.encode_next(tuple(nxt) if nxt else None))


@post("/deadLetters/{dead_letter_id:str}/replay", status_code=HTTP_202_ACCEPTED)
async def replay_dead_letter(
    request: Request[Any, Any, Any], app_id: FromPath[str], dead_letter_id: FromPath[str]
) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    services = services_of(request)
    try:
        key = cursors.decode(dead_letter_id, 2)
    except ApiError:
        raise not_found("dead letter") from None
    if key is None:
        raise not_found("dead letter")
    replayed, _ = await replay(
        services.publishes,
        signed.app.id,
        keys=[(key[0], key[1])],
        provider=None,
        publish_id=None,
        batch_size=services.settings.engine.batch_size,
    )
    if not replayed:
        raise not_found("dead letter")
    if services.engine is not None:
        services.engine.notify()
    return {"deadLetterId": dead_letter_id, "replayed": True}


class DeliveryResult(Base):
    outcome: str
    device_id: str | None = None
    provider: str | None = None


class DeliveryEvent(Base):
    publish_id: str
    event_id: str
    occurred_at_ms: int
    result: DeliveryResult


@post("/deliveryStatus", status_code=HTTP_202_ACCEPTED)
async def delivery_status(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    """A delivery event with outcome ``accepted`` for a device is that delivery's ``delivered``
    receipt (counted once, as ``POST`` of a native receipt); pushgate records the other outcomes
    (rejections, retries, expiry) itself from the providers' answers."""
    signed = await auth.authorize(request, app_id)
    event: DeliveryEvent = decode(signed.body, DeliveryEvent, "DeliveryEvent")
    if event.result.outcome != "accepted":
        raise not_supported(f"a deliveryStatus with outcome {event.result.outcome!r} (only accepted)")
    if not event.result.device_id:
        raise bad_request("result.deviceId: required (the device whose delivery this is)")
    if not 0 <= event.occurred_at_ms < 253402300800000:
        raise bad_request("occurredAtMs: out of range")
    at = event.occurred_at_ms / 1000
    if at > clock.now() + FUTURE_SKEW_SECONDS:  # as POST /v1/receipts
        raise bad_request(
            f"occurredAtMs: in the future (more than {int(FUTURE_SKEW_SECONDS)} s ahead of the server)"
        )
    services = services_of(request)
    publish_id = await services.publishes.resolve(signed.app.id, event.publish_id)
    recorded = None
    if publish_id is not None:
        try:
            recorded = await record_device_receipt(
                services.db,
                services.publishes,
                signed.app.id,
                publish_id,
                event.result.device_id,
                ReceiptEvent.DELIVERED,
                at,
                webhooks=services.webhooks,
            )
        except ReceiptTooEarly as exc:
            raise bad_request(
                f"occurredAtMs: before its publish was accepted ({rfc3339(exc.publish_created_at)})"
            ) from None
    if recorded is None or recorded.result is ReceiptResult.NOT_FOUND:
        raise not_found("delivery")
    return {
        "appId": app_id,
        "publishId": event.publish_id,
        "eventId": event.event_id,
        "occurredAtMs": event.occurred_at_ms,
        "result": msgspec.to_builtins(event.result),
    }


HANDLERS = [
    put_credential,
    list_credentials,
    put_template,
    list_templates,
    get_template,
    delete_template,
    dead_letters,
    replay_dead_letter,
    delivery_status,
]
