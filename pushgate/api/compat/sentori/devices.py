"""Sentori's device routes: register a token by installId, revoke it, subscribe it to topics.

Registration is the native one (``registration`` + ``register_device``): a Sentori ``kind`` is
a native provider, ``userKey``/``appUserId`` the device's user, ``traits`` its tags,
``metadata`` its meta. Sentori upserts by ``installId`` (falling back to the token), the native
registry by token; so the installId is kept as the device's tag ``sentori_install`` and looked up
first: a re-registration of an install with a new token updates the same device (same spToken),
and one without an installId updates the token's device. Topics are native channels.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from pushgate.api.common import normalize_token
from pushgate.api.compat.sentori import resolve
from pushgate.api.compat.sentori.common import app_of, body_as, services_of
from pushgate.api.compat.sentori.mapping import (
    EXPO_TAG,
    INSTALL_TAG,
    KINDS,
    device_id_of,
    handle_of,
    is_expo_token,
    text_map,
)
from pushgate.api.devices import register_device, registration
from pushgate.api.errors import ApiError
from pushgate.api.limits import within_limits
from pushgate.api.schemas import DeviceIn
from pushgate.api.services import Services
from pushgate.domain.registry import valid_channel
from pushgate.domain.scopes import Scope
from pushgate.store.apps import App
from pushgate.store.devices import Device, DeviceFilter
from pushgate.store.registrations import DeviceConflict, token_hash


class DeviceBody(msgspec.Struct, rename="camel"):
    """``POST /v1/push/devices`` (and the overview's ``/v1/push/tokens``); unknown fields are
    ignored, as Sentori's server does."""

    kind: str
    native_token: str | dict[str, Any]
    env: str | None = None
    install_id: str | None = None
    #: The app's user (Sentori stores a salted hash of it; pushgate stores what it is given).
    user_key: str | None = None
    app_user_id: str | None = None
    metadata: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    platform: str | None = None
    locale: str | None = None
    timezone: str | None = None
    app_version: str | None = None
    #: The install's ``ExponentPushToken[…]``: Expo-compatible sends to it reach this device.
    expo_push_token: str | None = None


class TopicBody(msgspec.Struct, rename="camel"):
    topic: str


def _invalid(code: str, detail: str) -> ApiError:
    return ApiError(400, code, detail)


async def _existing(services: Services, app: App, body: DeviceBody, provider: str) -> Device | None:
    """The device this registration updates: the install's, else the token's (tags included)."""
    if body.install_id:
        found = await resolve.by_tag(services, app.id, INSTALL_TAG, body.install_id, active=False)
        if found:
            return found[0]
    _, key = normalize_token(provider, body.native_token, services.settings)
    devs, _ = await services.devices.list_devices(
        app.id,
        DeviceFilter(provider_token_hashes=[token_hash(provider, key)]),
        cursor=None,
        limit=1,
        include=("tags",),
    )
    return devs[0] if devs else None


async def find_device(services: Services, app_id: str, handle: str) -> str | None:
    """The device an spToken names (or, as Sentori also accepts, its native token)."""
    dev = device_id_of(handle)
    if dev is not None:
        return dev
    found = await resolve.by_native_token(services, app_id, [handle])
    return found[handle][0] if found.get(handle) else None


def _device_in(body: DeviceBody, provider: str, platform: str, existing: Device | None) -> DeviceIn:
    tags = dict(existing.tags or {}) if existing is not None else {}
    tags.update(text_map(body.traits) or {})
    if body.install_id:
        tags[INSTALL_TAG] = body.install_id
    if body.expo_push_token is not None:
        if not is_expo_token(body.expo_push_token):
            raise _invalid("invalid_body", "expoPushToken: not an ExponentPushToken[…]")
        tags[EXPO_TAG] = body.expo_push_token
    raw: dict[str, Any] = {
        "provider": provider,
        "token": body.native_token,
        "platform": body.platform or platform,
        "id": existing.id if existing is not None else None,
        "user": body.user_key or body.app_user_id,
        "meta": text_map(body.metadata),
        "tags": tags or None,
        "locale": body.locale,
        "timezone": body.timezone,
        # Only APNs tokens have an environment natively; Sentori sends one for every kind.
        "environment": body.env if provider == "apns" else None,
        "app_version": body.app_version,
    }
    try:
        return msgspec.convert({k: v for k, v in raw.items() if v is not None}, DeviceIn)
    except msgspec.ValidationError as exc:
        raise _invalid("invalid_body", str(exc)) from None


@post(["/devices", "/tokens"], status_code=HTTP_202_ACCEPTED, opt={"scope": Scope.REGISTER})
async def register(request: Request[Any, Any, Any]) -> Response[Any]:
    body = await body_as(request, DeviceBody)
    if body.kind not in KINDS:
        raise _invalid("invalid_kind", f"kind: {body.kind!r} is not one of {', '.join(sorted(KINDS))}")
    if body.env is not None and body.env not in ("production", "sandbox"):
        raise _invalid("invalid_env", "env: use production or sandbox")
    services, app = services_of(request), app_of(request)
    provider, platform = KINDS[body.kind]
    existing = await _existing(services, app, body, provider)
    reg = registration(_device_in(body, provider, platform, existing), services.settings)
    try:
        device, created = await register_device(app, services, reg)
    except DeviceConflict as exc:
        raise ApiError(
            409,
            "token_conflict",
            f"this nativeToken is registered to another install ({handle_of(str(exc.args[0]))})",
        ) from None
    out = {"spToken": handle_of(device.id), "token_id": handle_of(device.id), "is_new": created}
    if body.install_id:
        out["installId"] = body.install_id
    return Response(out, status_code=HTTP_202_ACCEPTED)


@delete(
    ["/devices/{handle:str}", "/tokens/{handle:str}"], status_code=HTTP_200_OK, opt={"scope": Scope.REGISTER}
)
async def revoke(request: Request[Any, Any, Any], handle: FromPath[str]) -> Response[Any]:
    services, app = services_of(request), app_of(request)
    dev = await find_device(services, app.id, handle)
    removed = 0
    if dev is not None:
        with within_limits():
            removed = await services.devices.remove(app.id, DeviceFilter(ids=[dev]))
    if not removed:
        raise ApiError(404, "device_token_not_found", f"no device {handle[:80]!r}")
    return Response({"status": "revoked", "spToken": handle_of(dev or "")}, status_code=HTTP_200_OK)


async def _topic(request: Request[Any, Any, Any], handle: str, topic: str, on: bool) -> Response[Any]:
    if not topic or not valid_channel(topic):
        raise _invalid(
            "invalid_topic", f"topic: {topic[:80]!r} is not a valid topic name (letters, digits, _-.:@)"
        )
    services, app = services_of(request), app_of(request)
    dev = await find_device(services, app.id, handle)
    found = False
    if dev is not None:
        with within_limits():
            found = await services.channels.set_channel(app.id, dev, topic, on)
    if not found:
        raise ApiError(404, "device_token_not_found", f"no device {handle[:80]!r}")
    status = "subscribed" if on else "unsubscribed"
    return Response({"status": status, "topic": topic}, status_code=HTTP_202_ACCEPTED)


@post(
    ["/devices/{handle:str}/topics", "/tokens/{handle:str}/topics"],
    status_code=HTTP_202_ACCEPTED,
    opt={"scope": Scope.REGISTER},
)
async def subscribe(request: Request[Any, Any, Any], handle: FromPath[str]) -> Response[Any]:
    body = await body_as(request, TopicBody)
    return await _topic(request, handle, body.topic, True)


@delete(
    ["/devices/{handle:str}/topics/{topic:str}", "/tokens/{handle:str}/topics/{topic:str}"],
    status_code=HTTP_202_ACCEPTED,
    opt={"scope": Scope.REGISTER},
)
async def unsubscribe(
    request: Request[Any, Any, Any], handle: FromPath[str], topic: FromPath[str]
) -> Response[Any]:
    return await _topic(request, handle, topic, False)


#: Sentori's current paths (``/devices``) and the overview's (``/tokens``): the same handlers.
HANDLERS = [register, revoke, subscribe, unsubscribe]
