"""Channel and user-binding routes, and private channels (docs/clients.md).

Marking a channel private (``PUT``/``DELETE /v1/channels/{channel}/private``) needs ``admin``:
it decides which clients may listen. Listing them (``GET /v1/channels/private``) needs ``read``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from pushgate.api import cursors
from pushgate.api.common import check_channels, page_limit, split_list
from pushgate.api.devices import device_out
from pushgate.api.errors import ApiError, bad_request, error_responses
from pushgate.api.limits import within_limits
from pushgate.api.schemas import (
    ChannelOut,
    ChannelPage,
    DevicePage,
    Matched,
    UserChannelOut,
    UserChannelPage,
    UserChannelsIn,
)
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.registry import valid_channel
from pushgate.domain.timefmt import rfc3339
from pushgate.store.private_channels import PrivateChannelStore


class PrivateChannelOut(msgspec.Struct):
    channel: str
    #: When it was made private.
    created_at: str


class PrivateChannelPage(msgspec.Struct):
    items: list[PrivateChannelOut]
    next_cursor: str | None


class ChannelController(Controller):
    path = "/"
    tags = ["channels"]

    @get("/channels", summary="Channels with subscriber counts", responses=error_responses(400, 401))
    async def list_channels(
        self,
        app: AppDep,
        services: ServicesDep,
        prefix: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> ChannelPage:
        items, nxt = await services.channels.list_channels(
            app.id,
            cursor=cursors.decode_one(cursor),
            limit=page_limit(limit, services.settings),
            prefix=prefix,
        )
        return ChannelPage([ChannelOut(c, n) for c, n in items], cursors.encode_next(nxt))

    @get(
        "/channels/{channel:str}/devices",
        summary="Devices subscribed to a channel",
        responses=error_responses(400, 401),
    )
    async def channel_devices(
        self,
        channel: FromPath[str],
        app: AppDep,
        services: ServicesDep,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> DevicePage:
        if not valid_channel(channel):
            check_channels([channel], "channel")
        devs, nxt = await services.channels.channel_devices(
            app.id, channel, cursor=cursors.decode_one(cursor), limit=page_limit(limit, services.settings)
        )
        return DevicePage([device_out(d) for d in devs], cursors.encode_next(nxt))

    @post(
        "/users/{user:str}/channels",
        status_code=HTTP_200_OK,
        summary="Bind channels to a user",
        responses=error_responses(400, 401, 413),
    )
    async def user_channels(
        self, user: FromPath[str], data: JSONBody[UserChannelsIn], app: AppDep, services: ServicesDep
    ) -> Matched:
        if not user or len(user) > 200:
            raise bad_request("user: must be 1-200 characters")
        check_channels(data.channels)
        if data.op != "set" and not data.channels:
            raise bad_request("channels: give at least one channel for add/remove")
        with within_limits():
            await services.bindings.update_user_channels(app.id, user, data.op, data.channels)
        return Matched(len(data.channels))

    @get("/user-channels", summary="List user to channel bindings", responses=error_responses(400, 401))
    async def list_user_channels(
        self,
        app: AppDep,
        services: ServicesDep,
        users: FromQuery[list[str] | None] = None,
        channels: FromQuery[list[str] | None] = None,
        channel_prefix: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> UserChannelPage:
        keys = cursors.decode(cursor, 2)
        cur = None if keys is None else (keys[0], keys[1])
        items, nxt = await services.bindings.list_user_channels(
            app.id,
            users=split_list(users),
            channels=split_list(channels),
            channel_prefix=channel_prefix,
            cursor=cur,
            limit=page_limit(limit, services.settings),
        )
        return UserChannelPage(
            [UserChannelOut(u, c) for u, c in items], cursors.encode_next(tuple(nxt) if nxt else None)
        )

    @get(
        "/channels/private",
        summary="Private channels: a client or device token joins one only if its token names it",
        responses=error_responses(400, 401),
    )
    async def list_private(
        self,
        app: AppDep,
        services: ServicesDep,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> PrivateChannelPage:
        items, nxt = await PrivateChannelStore(services.db).list(
            app.id, cursor=cursors.decode_one(cursor), limit=page_limit(limit, services.settings)
        )
        return PrivateChannelPage(
            [PrivateChannelOut(p.channel, rfc3339(p.created_at) or "") for p in items],
            cursors.encode_next(nxt),
        )

    @put(
        "/channels/{channel:str}/private",
        status_code=HTTP_204_NO_CONTENT,
        summary="Make a channel private (idempotent)",
        responses=error_responses(400, 401, 403),
    )
    async def make_private(self, channel: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        if not valid_channel(channel):
            check_channels([channel], "channel")
        await PrivateChannelStore(services.db).mark(app.id, channel)

    @delete(
        "/channels/{channel:str}/private",
        status_code=HTTP_204_NO_CONTENT,
        summary="Make a private channel public again",
        responses=error_responses(400, 401, 403, 404),
    )
    async def make_public(self, channel: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        if not valid_channel(channel):
            check_channels([channel], "channel")
        found = await PrivateChannelStore(services.db).unmark(app.id, channel)
        if not found:
            raise ApiError(404, "not_found", f"channel {channel!r} is not private")
