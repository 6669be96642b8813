"""Minting client and device tokens, and what the device routes check when a token calls them
(docs/clients.md).

``POST /v1/client-tokens`` and ``POST /v1/devices/{id}/token`` need the app key's ``register``
scope. The checks below are no-ops for a request made with an API key: the app key may always
do everything (join any private channel, name any user).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from pushgate.api.client_auth import ClientPrincipal, client_of, mint, signing_secret
from pushgate.api.common import check_channels
from pushgate.api.device_views import device_out
from pushgate.api.errors import ApiError, error_responses, not_found
from pushgate.api.schemas import DeviceIn, DeviceOut, Strict
from pushgate.api.services import AppDep, Services, ServicesDep
from pushgate.domain import clock
from pushgate.domain.client_scopes import (
    CLIENT_TTL_DEFAULT,
    CLIENT_TTL_MAX,
    DEVICE_TTL_DEFAULT,
    DEVICE_TTL_MAX,
    MAX_TOKEN_CHANNELS,
    TokenKind,
    joined,
    refused_joins,
)
from pushgate.domain.timefmt import rfc3339
from pushgate.store.apps import App
from pushgate.store.devices import Device, DeviceFilter
from pushgate.store.private_channels import PrivateChannelStore
from pushgate.store.registrations import DeviceConflict, Registration, token_hash

User = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Channels = Annotated[list[str], msgspec.Meta(max_length=MAX_TOKEN_CHANNELS)]


class ClientTokenIn(Strict):
    #: The user the device will belong to (absent: an anonymous device).
    user: User | None = None
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=CLIENT_TTL_MAX)] = CLIENT_TTL_DEFAULT
    #: Private channels the device may join (public ones need no mention).
    channels: Channels | None = None


class DeviceTokenIn(Strict):
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=DEVICE_TTL_MAX)] = DEVICE_TTL_DEFAULT
    channels: Channels | None = None


class TokenOut(msgspec.Struct):
    token: str
    expires_at: str


class RegisteredDevice(msgspec.Struct):
    """``POST /v1/devices``'s answer: the device, and a token for its own routes."""

    device: DeviceOut
    #: A device token (docs/clients.md); its ``channels`` are the client token's, if any.
    device_token: str
    device_token_expires_at: str


async def _token(
    services: Services,
    app: App,
    kind: TokenKind,
    subject: str | None,
    ttl: int,
    channels: Iterable[str] | None,
) -> TokenOut:
    names = sorted(set(channels or ()))
    check_channels(names)
    expires_at = int(clock.now()) + ttl
    secret = await signing_secret(services, app)
    token = mint(secret, kind, app_id=app.id, subject=subject, expires_at=expires_at, channels=names)
    return TokenOut(token, rfc3339(expires_at) or "")


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


async def check_joins(
    request: Request[Any, Any, Any], services: Services, app: App, joining: Iterable[str]
) -> None:
    """403 when a token joins a private channel its ``channels`` claim does not name."""
    principal = client_of(request)
    names = set(joining)
    if principal is None or not names:
        return
    private = await PrivateChannelStore(services.db).private_among(app.id, names)
    refused = refused_joins(names, private, principal.channels)
    if refused:
        raise _forbidden(
            f"channels: {', '.join(refused)} {'is' if len(refused) == 1 else 'are'} private and this "
            f"{principal.kind} token does not allow {'it' if len(refused) == 1 else 'them'}; the backend "
            "mints a token naming it (channels of POST /v1/client-tokens or POST /v1/devices/{id}/token)"
        )


async def registration_in(
    request: Request[Any, Any, Any], services: Services, app: App, data: DeviceIn
) -> DeviceIn:
    """The body of ``POST /v1/devices`` as a client token may give it: its device belongs to the
    token's user (forced when absent) and joins only the private channels the token allows."""
    principal = client_of(request)
    if principal is None:
        return data
    if data.id is not None:
        raise _forbidden("id: a client token registers a device by its push token, never by id; leave id out")
    if data.user is not None and data.user != principal.subject:
        mine = f"user {principal.subject!r}" if principal.subject else "no user (an anonymous device)"
        raise _forbidden(f"user: this client token registers devices of {mine} only; leave user out")
    await check_joins(request, services, app, data.channels or ())
    if principal.subject is not None:
        data = msgspec.structs.replace(data, user=principal.subject)
    return data


async def check_takeover(
    request: Request[Any, Any, Any], services: Services, app: App, reg: Registration
) -> None:
    """403 when an anonymous client token registers a push token whose device has a user.

    Re-registering a push token updates its device and answers a device token for it; an
    anonymous token would leave the user as it is and hand its holder that user's device (its
    meta, tags, deletion). A client token with a user may (the device becomes its user's: the
    push token is the device's proof), and so may the app key."""
    principal = client_of(request)
    if principal is None or principal.subject is not None:
        return
    same = DeviceFilter(provider_token_hashes=[token_hash(reg.provider, reg.token_key)])
    found, _ = await services.devices.list_devices(app.id, same, cursor=None, limit=1)
    if found and found[0].user is not None:
        raise _forbidden(
            "token: this push token's device belongs to a user, and this client token has none; "
            "register it with a client token minted for that user (POST /v1/client-tokens with user)"
        )


def conflict(request: Request[Any, Any, Any], exc: DeviceConflict) -> ApiError:
    """The 409 of a push token registered as another device: the app key is told which; a
    token caller is not (it cannot learn other devices' ids, docs/clients.md)."""
    if client_of(request) is not None:
        return ApiError(
            409,
            "conflict",
            "token: this push token is already registered as another device; keep the current one "
            "or ask the backend (the app key) to remove the other device",
        )
    return ApiError(409, "conflict", f"this token is already registered as device {exc.args[0]}")


async def check_patch(
    request: Request[Any, Any, Any],
    services: Services,
    app: App,
    device: Device,
    user: str | None,
    channels: list[str] | None,
) -> None:
    """A device token may change its device's fields but not its user, and join (by replacing
    its channel list) only the private channels the token allows."""
    principal = client_of(request)
    if principal is None:
        return
    if user is not None and (user or None) != device.user:
        raise _forbidden("user: a device token cannot change its device's user; the backend can (app key)")
    if channels is not None:
        await check_joins(request, services, app, joined(device.channels, channels))


async def registered(
    request: Request[Any, Any, Any], services: Services, app: App, device: Device
) -> RegisteredDevice:
    """The answer of a registration: the device and a device token for it (the client token's
    private channels carry over; an app-key registration's token allows none)."""
    principal: ClientPrincipal | None = client_of(request)
    channels = principal.channels if principal is not None else ()
    token = await _token(services, app, TokenKind.DEVICE, device.id, DEVICE_TTL_DEFAULT, channels)
    return RegisteredDevice(device_out(device), token.token, token.expires_at)


class ClientTokenController(Controller):
    path = "/"
    tags = ["client tokens"]

    @post(
        "/client-tokens",
        status_code=HTTP_200_OK,
        summary="Mint a client token: a device registers itself with it",
        responses=error_responses(400, 401, 403),
    )
    async def mint_client(
        self, data: JSONBody[ClientTokenIn], app: AppDep, services: ServicesDep
    ) -> TokenOut:
        return await _token(services, app, TokenKind.CLIENT, data.user, data.ttl_seconds, data.channels)

    @post(
        "/devices/{device_id:str}/token",
        status_code=HTTP_200_OK,
        summary="Mint a device token for one device",
        responses=error_responses(400, 401, 403, 404),
    )
    async def mint_device(
        self,
        device_id: FromPath[str],
        app: AppDep,
        services: ServicesDep,
        data: JSONBody[DeviceTokenIn | None] = None,
    ) -> TokenOut:
        body = data or DeviceTokenIn()
        if await PrivateChannelStore(services.db).device(app.id, device_id) is None:
            raise not_found("device", device_id)
        return await _token(services, app, TokenKind.DEVICE, device_id, body.ttl_seconds, body.channels)
