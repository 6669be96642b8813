"""``/apps/{appId}/push/deviceRegistrations`` and ``/channelSubscriptions`` on the native registry.

A device registered here is a native device (``registration`` + ``register_device``: the same
validation, limits and token normalisation as ``POST /v1/devices``), so it is visible on
``/v1/devices`` and every other front-end with the same channels. Its device identity token is
the native device token.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pushgate.api import cursors
from pushgate.api.common import check_channels
from pushgate.api.compat.sockudo import auth
from pushgate.api.compat.sockudo.shapes import (
    SOCKUDO_PROVIDER,
    DeviceDetails,
    decode,
    device_in,
    device_out,
    device_token_hash,
    page,
)
from pushgate.api.devices import register_device, registration
from pushgate.api.errors import ApiError, bad_request
from pushgate.api.limits import within_limits
from pushgate.api.schemas import DeviceIn
from pushgate.api.services import Services
from pushgate.domain.client_scopes import refused_joins
from pushgate.store.devices import Device, DeviceFilter
from pushgate.store.private_channels import PrivateChannelStore
from pushgate.store.registrations import DeviceConflict

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def limit_of(params: dict[str, str]) -> int:
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        n = int(raw)
    except ValueError:
        raise bad_request("limit must be an integer") from None
    if not 1 <= n <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    return n


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


async def _device(services: Services, app_id: str, device_id: str) -> Device:
    device = await services.devices.get(app_id, device_id)
    if device is None:
        raise not_found("device")
    return device


@post("/deviceRegistrations", status_code=HTTP_201_CREATED)
async def register(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id, admin=False)
    services = services_of(request)
    details: DeviceDetails = decode(signed.body, DeviceDetails, "DeviceDetails")
    body = device_in(details)
    wanted = body.pop("id")
    try:
        data = msgspec.convert({**body, "id": wanted}, DeviceIn)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid DeviceDetails: {exc}") from None
    existing = await services.devices.get(signed.app.id, wanted)
    rotate = request.headers.get(auth.ROTATE_HEADER, "").lower() == "true"
    if not signed.admin:
        if existing is None:
            raise auth.forbidden("device token registration requires an existing device")
        await auth.check_device(services, signed, request, wanted)
        if data.user is not None and (data.user or None) != existing.user:  # as check_patch on /v1
            raise auth.forbidden("clientId: a device identity token cannot change its device's clientId")
    reg = registration(data, services.settings)
    if existing is None:  # Sockudo's clients choose the id: a new device is created with it
        reg.device_id, reg.create_as = None, wanted
    try:
        device, created = await register_device(signed.app, services, reg)
    except DeviceConflict as exc:
        # A device caller is not told the other device's id (as on /v1, docs/clients.md).
        other = f" ({exc})" if signed.admin else ""
        raise ApiError(409, "conflict", f"the token is registered to another device{other}") from None
    out: dict[str, Any] = {
        "change": "inserted" if created else "updated",
        "tokenHash": device_token_hash(device),
        "device": device_out(app_id, device),
    }
    if signed.admin and (created or rotate):
        out["deviceIdentityToken"] = await auth.new_identity_token(services, signed.app, device.id)
    return out


@get("/deviceRegistrations")
async def list_devices(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    services = services_of(request)
    devs, nxt = await services.devices.list_devices(
        signed.app.id,
        DeviceFilter(),
        cursor=cursors.decode_one(signed.params.get("cursor")),
        limit=limit_of(signed.params),
        include=("meta",),
    )
    return page([device_out(app_id, d) for d in devs], cursors.encode_next(nxt))


@delete("/deviceRegistrations", status_code=200)
async def remove_where(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    client_id = signed.params.get("clientId")
    if not client_id:
        raise bad_request("removeWhere requires clientId")
    with within_limits():
        n = await services_of(request).devices.remove(signed.app.id, DeviceFilter(users=[client_id]))
    return {"deleted": n, "consistency": "eventual"}


@get("/deviceRegistrations/{device_id:str}")
async def get_device(
    request: Request[Any, Any, Any], app_id: FromPath[str], device_id: FromPath[str]
) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id, admin=False)
    services = services_of(request)
    device = await _device(services, signed.app.id, device_id)
    await auth.check_device(services, signed, request, device_id)
    return device_out(app_id, device)


@delete("/deviceRegistrations/{device_id:str}", status_code=HTTP_204_NO_CONTENT)
async def delete_device(
    request: Request[Any, Any, Any], app_id: FromPath[str], device_id: FromPath[str]
) -> None:
    signed = await auth.authorize(request, app_id, admin=False)
    services = services_of(request)
    if not signed.admin:
        await _device(services, signed.app.id, device_id)
        await auth.check_device(services, signed, request, device_id)
    with within_limits():
        await services.devices.remove(signed.app.id, DeviceFilter(ids=[device_id]))


class SubscriptionIn(msgspec.Struct, rename="camel"):
    channel: str
    device_id: str | None = None
    client_id: str | None = None
    # The seed document's spellings (sockudo.upsertChannelPushSubscription).
    device_id_: str | None = msgspec.field(default=None, name="device_id")
    client_id_: str | None = msgspec.field(default=None, name="client_id")


def subscription_out(app_id: str, channel: str, device: Device) -> dict[str, Any]:
    out: dict[str, Any] = {
        "appId": app_id,
        "channel": channel,
        "deviceId": device.id,
        "provider": SOCKUDO_PROVIDER.get(device.provider, device.provider),
        "tokenHash": device_token_hash(device),
    }
    if device.user is not None:
        out["clientId"] = device.user
    return out


@post("/channelSubscriptions", status_code=HTTP_201_CREATED)
async def subscribe(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id, admin=False)
    services = services_of(request)
    sub: SubscriptionIn = decode(signed.body, SubscriptionIn, "ChannelSubscription")
    device_id = sub.device_id or sub.device_id_
    check_channels([sub.channel], "channel")
    if not device_id:
        return await _subscribe_client(services, signed, sub)
    device = await _device(services, signed.app.id, device_id)
    allowed = await auth.check_device(services, signed, request, device_id)
    if allowed is not None:  # a device joins a private channel only if its token names it
        private = await PrivateChannelStore(services.db).private_among(signed.app.id, {sub.channel})
        if refused_joins({sub.channel}, private, allowed):
            raise auth.forbidden(
                f"channel {sub.channel!r} is private and this device identity token does not allow it"
            )
    with within_limits():
        if not await services.channels.set_channel(signed.app.id, device_id, sub.channel, True):
            raise not_found("device")
    return subscription_out(app_id, sub.channel, device)


async def _subscribe_client(services: Services, signed: auth.Signed, sub: SubscriptionIn) -> dict[str, Any]:
    """Sockudo's client-scoped subscription (``clientId``, no ``deviceId``): every device of the
    client, now and later, gets the channel's pushes: a native user-channel binding."""
    user = sub.client_id or sub.client_id_
    if not user:
        raise bad_request("deviceId or clientId: required")
    if not signed.admin:
        raise auth.forbidden("push-admin capability is required for a client subscription")
    if len(user) > 200:
        raise bad_request("clientId: at most 200 characters")
    with within_limits():
        await services.bindings.update_user_channels(signed.app.id, user, "add", [sub.channel])
    scope = hashlib.sha256(user.encode()).hexdigest()
    return {
        "appId": signed.app.id,
        "channel": sub.channel,
        "deviceId": f"__sockudo_client_scope__:{scope}",
        "clientId": user,
        "provider": "realtime",
        "tokenHash": scope,
    }


async def _subscribe_check(request: Request[Any, Any, Any], signed: auth.Signed) -> None:
    """push-subscribe may only touch its own device's subscriptions."""
    if signed.admin:
        return
    device_id = signed.params.get("deviceId")
    if not device_id:
        raise auth.forbidden("push-subscribe can only act on its own device subscriptions")
    services = services_of(request)
    await _device(services, signed.app.id, device_id)
    await auth.check_device(services, signed, request, device_id)


@get("/channelSubscriptions")
async def list_subscriptions(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id, admin=False)
    await _subscribe_check(request, signed)
    services = services_of(request)
    params, limit = signed.params, limit_of(signed.params)
    cursor = cursors.decode_one(params.get("cursor"))
    channel, device_id = params.get("channel"), params.get("deviceId")
    if device_id:
        device = await _device(services, signed.app.id, device_id)
        channels = sorted(c for c in device.channels or () if channel is None or c == channel)
        channels = [c for c in channels if cursor is None or c > cursor]
        nxt = channels[limit - 1] if len(channels) > limit else None
        items = [subscription_out(app_id, c, device) for c in channels[:limit]]
        return page(items, cursors.encode_next(nxt))
    if channel:
        devs, nxt = await services.channels.channel_devices(
            signed.app.id, channel, cursor=cursor, limit=limit
        )
        return page([subscription_out(app_id, channel, d) for d in devs], cursors.encode_next(nxt))
    devs, nxt = await services.devices.list_devices(
        signed.app.id, DeviceFilter(), cursor=cursor, limit=limit, include=("channels",)
    )
    items = [subscription_out(app_id, c, d) for d in devs for c in sorted(d.channels or ())]
    return page(items, cursors.encode_next(nxt))


@get("/channelSubscriptions/channels")
async def list_channels(request: Request[Any, Any, Any], app_id: FromPath[str]) -> dict[str, Any]:
    signed = await auth.authorize(request, app_id)
    found, nxt = await services_of(request).channels.list_channels(
        signed.app.id, cursor=cursors.decode_one(signed.params.get("cursor")), limit=limit_of(signed.params)
    )
    return page([name for name, _ in found], cursors.encode_next(nxt))


@delete("/channelSubscriptions", status_code=200)
async def unsubscribe(request: Request[Any, Any, Any], app_id: FromPath[str]) -> Response[Any]:
    signed = await auth.authorize(request, app_id, admin=False)
    await _subscribe_check(request, signed)
    services = services_of(request)
    channel, device_id = signed.params.get("channel"), signed.params.get("deviceId")
    pairs: list[tuple[str, str]] = []
    if device_id:
        device = await _device(services, signed.app.id, device_id)
        pairs = [(device_id, c) for c in device.channels or () if channel is None or c == channel]
    elif channel:
        cursor: str | None = None
        while True:
            devs, cursor = await services.channels.channel_devices(
                signed.app.id, channel, cursor=cursor, limit=MAX_LIMIT
            )
            pairs += [(d.id, channel) for d in devs]
            if cursor is None:
                break
    else:
        raise bad_request("delete requires channel or deviceId")
    deleted = 0
    with within_limits():
        for dev, ch in pairs:
            deleted += int(await services.channels.set_channel(signed.app.id, dev, ch, False))
    return Response({"deleted": deleted}, status_code=200)


HANDLERS = [
    register,
    list_devices,
    remove_where,
    get_device,
    delete_device,
    subscribe,
    list_subscriptions,
    list_channels,
    unsubscribe,
]
