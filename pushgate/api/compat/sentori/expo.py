"""Sentori's Expo-compatible routes: Expo's push API, served at ``/v1/push/expo-compat``.

An app that sent through Expo's push service keeps its backend code: ``send`` takes Expo's
messages (one, or a list of up to 100) and answers Expo's push tickets ``{"data": [{"status":
"ok", "id"}]}``, one per recipient in order; the receipts routes answer Expo's ``{"data": {id:
{"status", "message", "details"}}}``. Expo's server SDKs append their own ``/push/send`` and
``/push/getReceipts`` to the base URL they are given, so those paths are served too.

Expo push tokens are not a native provider (Expo's service relays to FCM and APNs itself): a
``to`` reaches the device registered with that ``ExponentPushToken[…]`` (the device's tag
``expo_token``, set by Sentori's registration ``expoPushToken``), an spToken, or a registered
native token; anything else is Expo's ``DeviceNotRegistered`` ticket. Each message is one
native publish; a ticket id is its delivery id, so a receipt is read from the native record.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from pushgate.api.compat.sentori import resolve
from pushgate.api.compat.sentori.common import EXPO_HANDLERS, app_of, authenticate, services_of
from pushgate.api.compat.sentori.mapping import (
    delivery_id,
    device_id_of,
    is_expo_token,
    split_delivery_id,
    text_map,
)
from pushgate.api.compat.sentori.sends import admit
from pushgate.api.compat.sentori.views import expo_receipt, not_registered
from pushgate.api.errors import ApiError
from pushgate.api.publish_batch import _Validator
from pushgate.api.services import Services
from pushgate.domain.scopes import Scope
from pushgate.domain.timefmt import rfc3339
from pushgate.store.apps import App
from pushgate.store.delivery_lookup import deliveries_by_key

#: Expo's limits: messages per request, receipt ids per request.
MAX_MESSAGES = 100
MAX_RECEIPTS = 1000
#: Recipients (``to`` entries) of all the messages of one request: each is a device lookup.
MAX_RECIPIENTS = 1000


class ExpoMessage(msgspec.Struct, rename="camel"):
    """One Expo push message (unknown fields ignored, as Expo's service does)."""

    to: str | Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_RECIPIENTS)]
    title: str | None = None
    body: str | None = None
    subtitle: str | None = None
    data: dict[str, Any] | None = None
    sound: str | dict[str, Any] | None = None
    badge: int | None = None
    ttl: int | None = None
    #: UNIX seconds (bounded: a larger one is no date).
    expiration: Annotated[int, msgspec.Meta(ge=0, le=2**33)] | None = None
    priority: Literal["default", "normal", "high"] | None = None
    channel_id: str | None = None
    category_id: str | None = None
    mutable_content: bool | None = None
    interruption_level: str | None = None
    content_available: bool | None = msgspec.field(default=None, name="_contentAvailable")
    rich_content: dict[str, Any] | None = None


class ReceiptIds(msgspec.Struct):
    ids: Annotated[list[str], msgspec.Meta(max_length=MAX_RECEIPTS)]


def _validation(message: str) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message)


def _messages(raw: bytes) -> list[ExpoMessage]:
    try:
        decoded = msgspec.json.decode(raw or b"null")
    except msgspec.DecodeError as exc:
        raise _validation(f"malformed JSON body: {exc}") from None
    items = decoded if isinstance(decoded, list) else [decoded]
    if len(items) > MAX_MESSAGES:
        raise ApiError(
            400,
            "PUSH_TOO_MANY_NOTIFICATIONS",
            f"You are trying to send more than {MAX_MESSAGES} push notifications in one request.",
        )
    try:
        messages = [msgspec.convert(item, ExpoMessage, strict=True) for item in items]
    except msgspec.ValidationError as exc:
        raise _validation(f'"value" fails: {exc}') from None
    if sum(1 if isinstance(m.to, str) else len(m.to) for m in messages) > MAX_RECIPIENTS:
        raise ApiError(
            400,
            "PUSH_TOO_MANY_NOTIFICATIONS",
            f"You are trying to send to more than {MAX_RECIPIENTS} recipients in one request.",
        )
    return messages


def _notification(m: ExpoMessage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ours, value in (
        ("title", m.title),
        ("body", m.body),
        ("data", text_map(m.data)),
        ("sound", m.sound if isinstance(m.sound, str) else _sound(m.sound).get("name")),
        ("badge", m.badge),
        ("ttl_seconds", m.ttl),
        ("channel_id", m.channel_id),
        ("category", m.category_id),
        ("mutable_content", m.mutable_content),
        ("content_available", m.content_available),
        ("interruption_level", m.interruption_level),
    ):
        if value is not None:
            out[ours] = value
    if m.subtitle is not None:  # no native subtitle: it travels as data
        out.setdefault("data", {})["subtitle"] = m.subtitle
    if m.priority is not None:
        out["priority"] = "high" if m.priority == "high" else "normal"
    image = (m.rich_content or {}).get("image")
    if isinstance(image, str):
        out["image"] = image
    return out


def _sound(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Expo's sound object ``{critical, name, volume}`` as APNs' ``aps.sound`` (an iOS critical
    alert); {} for none. Its ``name`` is also the notification's sound on the other providers."""
    if raw is None:
        return {}
    critical, name, volume = raw.get("critical", False), raw.get("name"), raw.get("volume")
    if not isinstance(critical, bool):
        raise _validation('"sound.critical" must be a boolean')
    if name is not None and not (isinstance(name, str) and 0 < len(name) <= 256):
        raise _validation('"sound.name" must be a string of 1-256 characters')
    if volume is not None and not (
        isinstance(volume, (int, float)) and not isinstance(volume, bool) and 0 <= volume <= 1
    ):
        raise _validation('"sound.volume" must be a number from 0 to 1')
    out: dict[str, Any] = {"critical": int(critical), "name": name or "default"}
    if volume is not None:
        out["volume"] = volume
    return out


async def _device_of(services: Services, app: App, to: str) -> str | None:
    """The active device a ``to`` names, if any."""
    if is_expo_token(to):
        found = await resolve.by_expo_token(services, app.id, to)
        return found[0] if found else None
    dev = device_id_of(to)
    if dev is not None:
        return dev if dev in await resolve.active_by_id(services, app.id, [dev]) else None
    found_native = (await resolve.by_native_token(services, app.id, [to])).get(to)
    return found_native[0] if found_native else None


async def _planned(
    services: Services, app: App, m: ExpoMessage
) -> tuple[list[str], list[str | None], dict[str, Any] | None]:
    """The message's targets, the device each reaches (None: not registered), and the native
    publish body of those reached (None: none is)."""
    targets = [m.to] if isinstance(m.to, str) else m.to
    devices = [await _device_of(services, app, to) for to in targets]
    reached = list(dict.fromkeys(d for d in devices if d is not None))
    if not reached:
        return targets, devices, None
    raw: dict[str, Any] = {
        "recipients": [{"type": "device", "device_id": d} for d in reached],
        "notification": _notification(m),
    }
    if m.expiration is not None:
        raw["expire_at"] = rfc3339(float(m.expiration))
    if isinstance(m.sound, dict):
        raw["providers"] = {"apns": {"payload": {"aps": {"sound": _sound(m.sound)}}}}
    return targets, devices, raw


@post(["/send", "/push/send"], status_code=HTTP_200_OK, opt={"scope": Scope.PUBLISH})
async def expo_send(request: Request[Any, Any, Any]) -> Response[Any]:
    """Expo's ``POST /push/send``: a ticket per recipient of every message, in order. Every
    message gets admission's checks before the first is admitted: a request refused for one
    message sends none (as Expo validates the whole request first)."""
    messages = _messages(await request.body())
    services, app = services_of(request), app_of(request)
    planned = [await _planned(services, app, m) for m in messages]
    validator = _Validator(app, services)
    for i, (_, _, raw) in enumerate(planned):
        if raw is None:
            continue
        try:
            await validator.check(raw)
        except msgspec.ValidationError as exc:
            raise _validation(f"[{i}]: {exc}") from None
        except ApiError as exc:
            raise ApiError(exc.status, exc.code, f"[{i}]: {exc.message}", exc.details, exc.headers) from None
    tickets: list[dict[str, Any]] = []
    for targets, devices, raw in planned:
        pub_id = (await admit(services, app, raw))[0].id if raw is not None else ""
        tickets += [
            {"status": "ok", "id": delivery_id(pub_id, dev)} if dev is not None else not_registered(to)
            for to, dev in zip(targets, devices, strict=True)
        ]
    return Response({"data": tickets}, status_code=HTTP_200_OK)


async def _receipts(request: Request[Any, Any, Any], ids: list[str]) -> dict[str, Any]:
    """Expo's receipts of ``ids``: ids unknown or still without an outcome are left out."""
    keys = {i: split_delivery_id(i) for i in ids}
    found = await deliveries_by_key(
        services_of(request).db, app_of(request).id, [k for k in keys.values() if k is not None]
    )
    out: dict[str, Any] = {}
    for ident, key in keys.items():
        row = found.get(key) if key is not None else None
        view = expo_receipt(row) if row is not None else None
        if view is not None:
            out[ident] = view
    return out


@post(["/receipts", "/push/getReceipts"], status_code=HTTP_200_OK, opt={"scope": Scope.READ})
async def expo_get_receipts(request: Request[Any, Any, Any]) -> Response[Any]:
    """Expo's ``POST /push/getReceipts`` ``{"ids": [...]}``."""
    try:
        body = msgspec.json.decode(await request.body() or b"null", type=ReceiptIds, strict=True)
    except msgspec.ValidationError as exc:
        code = "PUSH_TOO_MANY_RECEIPTS" if "length <=" in str(exc) else "VALIDATION_ERROR"
        raise ApiError(400, code, f'"ids" fails: {exc}') from None
    except msgspec.DecodeError as exc:
        raise _validation(f"malformed JSON body: {exc}") from None
    return Response({"data": await _receipts(request, body.ids)}, status_code=HTTP_200_OK)


@get("/receipts/{receipt_id:str}", opt={"scope": Scope.READ})
async def expo_receipt_one(request: Request[Any, Any, Any], receipt_id: FromPath[str]) -> Response[Any]:
    """Sentori's ``GET …/receipts/{id}``: one receipt in Expo's envelope (404 for an unknown id)."""
    data = await _receipts(request, [receipt_id])
    key = split_delivery_id(receipt_id)
    if not data and (
        key is None or not await deliveries_by_key(services_of(request).db, app_of(request).id, [key])
    ):
        raise ApiError(404, "NOT_FOUND", f"no push ticket {receipt_id[:120]!r}")
    return Response({"data": data}, status_code=HTTP_200_OK)


def router() -> Router:
    """The Expo-compatible routes with Expo's error shape (their own layer of handlers)."""
    return Router(
        "/expo-compat",
        route_handlers=[expo_send, expo_get_receipts, expo_receipt_one],
        exception_handlers=EXPO_HANDLERS,
        before_request=authenticate,
    )
