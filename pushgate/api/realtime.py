"""Realtime routes (docs/realtime.md): connection tokens, presence, the token secret.

``POST /v1/realtime/tokens`` needs ``publish`` (a backend letting its user receive what it
publishes); the secret routes need ``admin`` even to read (whoever has the secret can sign a
token for any user); presence needs ``read``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from pushgate.api.errors import ApiError, bad_request, error_responses
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain import clock
from pushgate.domain.timefmt import rfc3339
from pushgate.realtime import tokens

User = Annotated[str, msgspec.Meta(min_length=1, max_length=tokens.MAX_NAME)]
ChannelName = Annotated[str, msgspec.Meta(min_length=1, max_length=tokens.MAX_NAME)]


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    user: User
    #: How long the token connects (default 1 hour; at most ``[realtime] max_token_ttl_seconds``).
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1)] = 3600
    #: Channels the session joins besides its user's own room.
    channels: Annotated[list[ChannelName], msgspec.Meta(max_length=tokens.MAX_CHANNELS)] | None = None


class TokenOut(msgspec.Struct):
    token: str
    expires_at: str


class PresenceOut(msgspec.Struct):
    user: str
    #: Open socket.io sessions of the user.
    sessions: int


class SecretOut(msgspec.Struct):
    #: HS256 key for connection tokens this app's backend signs itself (claims: docs/realtime.md).
    secret: str
    #: ``config`` (``token_secret`` in the configuration: rotate it there) or ``stored``.
    source: str


def _disabled() -> ApiError:
    return ApiError(
        409, "realtime_disabled", "the realtime gateway is off: set [realtime] enabled = true in the config"
    )


async def app_secret(services: ServicesDep, app_id: str, app_name: str) -> tuple[str, str]:
    """The app's signing secret and where it comes from."""
    configured = services.settings.realtime_secret(app_id, app_name)
    if configured is not None:
        return configured, "config"
    return await services.realtime_secrets.secret(app_id), "stored"


class RealtimeController(Controller):
    path = "/realtime"
    tags = ["realtime"]

    @post(
        "/tokens",
        status_code=HTTP_200_OK,
        summary="Mint a connection token for one user",
        responses=error_responses(400, 401, 409),
    )
    async def mint(self, data: JSONBody[TokenIn], app: AppDep, services: ServicesDep) -> TokenOut:
        if services.realtime is None:
            raise _disabled()
        most = services.settings.realtime.max_token_ttl_seconds
        if data.ttl_seconds > most:
            raise bad_request(
                f"ttl_seconds: at most {most} (the configured [realtime] max_token_ttl_seconds)"
            )
        secret, _source = await app_secret(services, app.id, app.name)
        expires_at = int(clock.now()) + data.ttl_seconds
        token = tokens.mint(
            secret, app_id=app.id, user=data.user, expires_at=expires_at, channels=data.channels
        )
        return TokenOut(token, rfc3339(expires_at) or "")

    @get("/users/{user:str}", summary="Open realtime sessions of a user", responses=error_responses(401, 409))
    async def presence(self, user: FromPath[str], app: AppDep, services: ServicesDep) -> PresenceOut:
        if services.realtime is None:
            raise _disabled()
        return PresenceOut(user, await services.realtime.sessions(app.id, user))

    @get("/secret", summary="The app's connection-token secret", responses=error_responses(401, 403))
    async def secret(self, app: AppDep, services: ServicesDep) -> SecretOut:
        value, source = await app_secret(services, app.id, app.name)
        return SecretOut(value, source)

    @post(
        "/secret/rotate",
        status_code=HTTP_200_OK,
        summary="Replace the app's stored connection-token secret",
        responses=error_responses(401, 403, 409),
    )
    async def rotate(self, app: AppDep, services: ServicesDep) -> SecretOut:
        if services.settings.realtime_secret(app.id, app.name) is not None:
            raise ApiError(
                409,
                "configured_secret",
                "this app's token secret is set in the configuration (token_secret): change it there",
            )
        return SecretOut(await services.realtime_secrets.rotate(app.id), "stored")
