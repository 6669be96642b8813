"""Device registry routes: register, read, list, update (single and bulk), remove, channels."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from pushgate.api import client_tokens, cursors
from pushgate.api.common import check_channels, normalize_token, page_limit, provider_spec, split_list
from pushgate.api.device_search import query_filter, search_page
from pushgate.api.device_views import device_out as device_out  # also the channel routes'
from pushgate.api.errors import ApiError, bad_request, error_responses, not_found
from pushgate.api.limits import within_limits
from pushgate.api.schemas import (
    DeviceBulkUpdate,
    DeviceEnvelope,
    DeviceFilterIn,
    DeviceIn,
    DevicePage,
    DevicePatch,
    Matched,
    Strict,
)
from pushgate.api.services import AppDep, Services, ServicesDep
from pushgate.config import Settings
from pushgate.domain.registry import valid_channel, valid_timezone
from pushgate.providers import registry
from pushgate.store.apps import App
from pushgate.store.devices import Device, DeviceFilter
from pushgate.store.registrations import (
    UNSET,
    DeviceBatchDuplicate,
    DeviceBatchError,
    DeviceConflict,
    DeviceNotFound,
    Registration,
    token_hash,
)

_INCLUDES = {"meta", "tags", "channels"}

#: The most devices one ``POST /v1/devices/batch`` takes.
MAX_BATCH = 1000
#: The most ``tag.<name>=<value>`` filters one ``GET /v1/devices`` takes.
MAX_TAG_FILTERS = 20


class DeviceBatchIn(Strict):
    #: 1-1000 registrations, each exactly the body of ``POST /v1/devices``.
    devices: Annotated[list[DeviceIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class DeviceBatchItem(msgspec.Struct):
    id: str
    #: False when the token was already registered (the device was updated).
    created: bool


class DeviceBatchOut(msgspec.Struct):
    #: One entry per registration, in request order.
    devices: list[DeviceBatchItem]
    created: int
    updated: int


def _check_common(timezone: str | None, channels: list[str] | None) -> None:
    if timezone is not None and not valid_timezone(timezone):
        raise bad_request(f"timezone: {timezone!r} is not an IANA time zone (e.g. Europe/Berlin)")
    check_channels(channels)


def _platform_error(provider: str, platform: str) -> str | None:
    spec = registry.find(provider)
    return f"unknown provider {provider!r}" if spec is None else spec.platform_error(platform)


def _check_environment(provider: str, environment: str | None) -> None:
    spec = registry.find(provider)
    if environment is not None and not (spec is not None and spec.environments):
        have = ", ".join(s.name for s in registry.specs() if s.environments)
        raise bad_request(f"environment: only {have} devices have an environment (production or sandbox)")


async def register_device(app: App, services: Services, reg: Registration) -> tuple[Device, bool]:
    """The one registration path of every front-end (``DeviceConflict``: the caller's to answer)."""
    try:
        with within_limits():
            return await services.devices.register(app.id, reg)
    except DeviceNotFound:
        raise not_found("device", reg.device_id or "") from None


def registration(data: DeviceIn, settings: Settings) -> Registration:
    """Validate one ``POST /v1/devices`` body (400 on the first problem) and normalise its token
    (a compat front-end builds a ``DeviceIn`` and hands this to :func:`register_device`)."""
    provider_spec(data.provider)
    err = _platform_error(data.provider, data.platform)
    if err:
        raise bad_request(f"platform: {err}")
    _check_common(data.timezone, data.channels)
    _check_environment(data.provider, data.environment)
    token, key = normalize_token(data.provider, data.token, settings)
    return Registration(
        provider=data.provider,
        token=token,
        token_key=key,
        platform=data.platform,
        device_id=data.id,
        user=data.user if data.user is not None else UNSET,
        meta=data.meta if data.meta is not None else UNSET,
        tags=data.tags if data.tags is not None else UNSET,
        channels=data.channels if data.channels is not None else UNSET,
        locale=data.locale if data.locale is not None else UNSET,
        timezone=data.timezone if data.timezone is not None else UNSET,
        environment=data.environment if data.environment is not None else UNSET,
        app_version=data.app_version if data.app_version is not None else UNSET,
    )


def _batch_problem(index: int, message: str) -> dict[str, Any]:
    """``{"index", "key", "message", "source"}`` for item ``index``; ``message`` is ``"field: why"``."""
    field, sep, why = message.partition(": ")
    key = f"devices[{index}].{field}" if sep and field.isidentifier() else f"devices[{index}]"
    return {
        "index": index,
        "key": key,
        "message": why if key != f"devices[{index}]" else message,
        "source": "body",
    }


def _batch_error(status: int, code: str, problems: list[dict[str, Any]]) -> ApiError:
    first = problems[0]
    message = f"{first['key']}: {first['message']}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more; every problem is in details)"
    return ApiError(status, code, message, problems)


def _filter(services: ServicesDep, body: DeviceFilterIn) -> DeviceFilter:
    hashes = None
    if body.provider_tokens:
        hashes = []
        for pt in body.provider_tokens:
            _, key = normalize_token(pt.provider, pt.token, services.settings)
            hashes.append(token_hash(pt.provider, key))
    f = DeviceFilter(ids=body.ids, users=body.users, provider_token_hashes=hashes)
    if f.is_empty():
        raise bad_request("give at least one non-empty filter: ids, users or provider_tokens")
    return f


class DeviceController(Controller):
    path = "/devices"
    tags = ["devices"]

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Register or update a device",
        description="The answer carries a device token for the device (docs/clients.md). With a "
        "client token instead of the app key, the device belongs to the token's user.",
        responses=error_responses(400, 401, 403, 404, 409, 413),
    )
    async def register(
        self, request: Request[Any, Any, Any], data: JSONBody[DeviceIn], app: AppDep, services: ServicesDep
    ) -> client_tokens.RegisteredDevice:
        data = await client_tokens.registration_in(request, services, app, data)  # a client token's rules
        reg = registration(data, services.settings)
        await client_tokens.check_takeover(request, services, app, reg)  # an anonymous token's limit
        try:
            device, _created = await register_device(app, services, reg)
        except DeviceConflict as exc:
            raise client_tokens.conflict(request, exc) from None
        return await client_tokens.registered(request, services, app, device)

    @post(
        "/batch",
        status_code=HTTP_200_OK,
        summary="Register or update up to 1000 devices at once",
        description="Each item is validated exactly like `POST /v1/devices`. The batch is all or "
        "nothing: if any item is invalid, nothing is written and the 400 lists every invalid item "
        "in `details` (`index`, `key`, `message`). A 404/409 of an item with `id` names its index too.",
        responses=error_responses(400, 401, 404, 409, 413),
    )
    async def register_batch(
        self, data: JSONBody[DeviceBatchIn], app: AppDep, services: ServicesDep
    ) -> DeviceBatchOut:
        regs: list[Registration] = []
        problems: list[dict[str, Any]] = []
        for i, item in enumerate(data.devices):
            try:
                regs.append(registration(item, services.settings))
            except ApiError as exc:
                problems.append(_batch_problem(i, exc.message))
        if problems:
            raise _batch_error(400, "invalid_request", problems)
        try:
            with within_limits():
                done = await services.devices.register_many(app.id, regs)
        except DeviceBatchDuplicate as exc:
            raise _batch_error(
                400,
                "invalid_request",
                [
                    _batch_problem(i, f"token: the same device as devices[{first}]; give each device once")
                    for i, first in exc.pairs
                ],
            ) from None
        except DeviceBatchError as exc:
            i = exc.index
            if isinstance(exc.error, DeviceNotFound):
                problem = _batch_problem(i, f"id: device {regs[i].device_id!r} not found")
                raise _batch_error(404, "not_found", [problem]) from None
            problem = _batch_problem(
                i, f"token: this token is already registered as device {exc.error.args[0]}"
            )
            raise _batch_error(409, "conflict", [problem]) from None
        created = sum(1 for _, new in done if new)
        return DeviceBatchOut(
            [DeviceBatchItem(dev_id, new) for dev_id, new in done],
            created=created,
            updated=len(done) - created,
        )

    @get("/", summary="List devices", responses=error_responses(400, 401))
    async def list_devices(
        self,
        request: Request[Any, Any, Any],
        app: AppDep,
        services: ServicesDep,
        ids: FromQuery[list[str] | None] = None,
        users: FromQuery[list[str] | None] = None,
        providers: FromQuery[list[str] | None] = None,
        platforms: FromQuery[list[str] | None] = None,
        channels: FromQuery[list[str] | None] = None,
        status: FromQuery[str | None] = None,
        include: FromQuery[list[str] | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
        filter: FromQuery[str | None] = None,
        include_total_count: FromQuery[bool] = False,
    ) -> DevicePage:
        inc = set(split_list(include) or ())
        if inc - _INCLUDES:
            raise bad_request(
                f"include: unknown value(s) {sorted(inc - _INCLUDES)}; use meta, tags, channels"
            )
        tags = {k[4:]: v for k, v in request.query_params.items() if k.startswith("tag.") and len(k) > 4}
        if filter is not None:
            # The audience filter language (api/device_search.py): active devices only.
            if ids or users or providers or platforms or channels or status:
                raise bad_request("filter: give the filter alone (the other list filters go inside it)")
            if tags:
                raise bad_request(
                    f"tag.{min(tags)}: not with filter; put the tag inside it, e.g. "
                    f'{{"all": [..., {{"tag": "{min(tags)}", "is": "..."}}]}}'
                )
            node = query_filter(filter)
            return await search_page(
                services, app.id, node, cursor=cursor, limit=limit, include=inc, total=include_total_count
            )
        if include_total_count:
            raise bad_request(
                "include_total_count: only with filter (a count of the active devices a filter "
                'matches); e.g. filter={"provider": {"in": ["fcm", "apns"]}}, or GET /v1/stats/devices'
            )
        if status is not None and status not in ("active", "invalid"):
            raise bad_request("status: use active or invalid")
        if len(tags) > MAX_TAG_FILTERS:
            # Each is a join: a thousand of them passed SQLite's expression depth (a 500).
            raise bad_request(f"tag.*: at most {MAX_TAG_FILTERS} tag filters in one request")
        f = DeviceFilter(
            ids=split_list(ids),
            users=split_list(users),
            providers=split_list(providers),
            platforms=split_list(platforms),
            channels=split_list(channels),
            status=status,
            tags=tags,
        )
        devs, nxt = await services.devices.list_devices(
            app.id,
            f,
            cursor=cursors.decode_one(cursor),
            limit=page_limit(limit, services.settings),
            include=inc,
        )
        return DevicePage([device_out(d) for d in devs], cursors.encode_next(nxt))

    @get("/{device_id:str}", summary="Get a device", responses=error_responses(400, 401, 404))
    async def get_device(
        self, device_id: FromPath[str], app: AppDep, services: ServicesDep
    ) -> DeviceEnvelope:
        device = await services.devices.get(app.id, device_id)
        if device is None:
            raise not_found("device", device_id)
        return DeviceEnvelope(device_out(device))

    @patch(
        "/{device_id:str}", summary="Update a device", responses=error_responses(400, 401, 403, 404, 409, 413)
    )
    async def patch_device(
        self,
        request: Request[Any, Any, Any],
        device_id: FromPath[str],
        data: JSONBody[DevicePatch],
        app: AppDep,
        services: ServicesDep,
    ) -> DeviceEnvelope:
        device = await services.devices.get(app.id, device_id)
        if device is None:
            raise not_found("device", device_id)
        await client_tokens.check_patch(request, services, app, device, data.user, data.channels)
        _check_common(data.timezone, data.channels)
        platform = data.platform or device.platform
        err = _platform_error(device.provider, platform)
        if err:
            raise bad_request(f"platform: {err}")
        _check_environment(device.provider, data.environment)
        if data.token is not None:
            token, key = normalize_token(device.provider, data.token, services.settings)
        else:
            token, key = device.token, _identity(device)
        reg = Registration(
            provider=device.provider,
            token=token,
            token_key=key,
            platform=platform,
            device_id=device_id,
            user=(data.user or None) if data.user is not None else UNSET,
            meta=data.meta if data.meta is not None else UNSET,
            tags=data.tags if data.tags is not None else UNSET,
            channels=data.channels if data.channels is not None else UNSET,
            locale=data.locale if data.locale is not None else UNSET,
            timezone=data.timezone if data.timezone is not None else UNSET,
            environment=data.environment if data.environment is not None else UNSET,
            app_version=data.app_version if data.app_version is not None else UNSET,
        )
        try:
            with within_limits():
                updated, _ = await services.devices.register(app.id, reg)
        except DeviceNotFound:
            raise not_found("device", device_id) from None
        except DeviceConflict as exc:
            raise client_tokens.conflict(request, exc) from None
        return DeviceEnvelope(device_out(updated))

    @delete(
        "/{device_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Remove a device",
        responses=error_responses(400, 401, 404),
    )
    async def delete_device(self, device_id: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        with within_limits():
            n = await services.devices.remove(app.id, DeviceFilter(ids=[device_id]))
        if n == 0:
            raise not_found("device", device_id)

    @post(
        "/update",
        status_code=HTTP_200_OK,
        summary="Bulk update devices by filter",
        responses=error_responses(400, 401, 413),
    )
    async def bulk_update(
        self, data: JSONBody[DeviceBulkUpdate], app: AppDep, services: ServicesDep
    ) -> Matched:
        if not (data.user_update or data.meta_update or data.tags_update or data.channels_update):
            raise bad_request(
                "nothing to update: give user_update, meta_update, tags_update or channels_update"
            )
        if data.channels_update:
            check_channels(data.channels_update.channels, "channels_update.channels")
        f = _filter(services, data)
        with within_limits():
            n = await services.devices.update(
                app.id,
                f,
                user=(data.user_update.user or None) if data.user_update else UNSET,
                meta=data.meta_update.meta if data.meta_update else UNSET,
                tags=data.tags_update.tags if data.tags_update else UNSET,
                channels_op=data.channels_update.op if data.channels_update else None,
                channels=data.channels_update.channels if data.channels_update else (),
            )
        return Matched(n)

    @post(
        "/remove",
        status_code=HTTP_200_OK,
        summary="Bulk remove devices by filter",
        responses=error_responses(400, 401, 413),
    )
    async def bulk_remove(
        self, data: JSONBody[DeviceFilterIn], app: AppDep, services: ServicesDep
    ) -> Matched:
        f = _filter(services, data)
        with within_limits():
            return Matched(await services.devices.remove(app.id, f))

    @put(
        "/{device_id:str}/channels/{channel:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Subscribe a device",
        responses=error_responses(400, 401, 403, 404),
    )
    async def subscribe(
        self,
        request: Request[Any, Any, Any],
        device_id: FromPath[str],
        channel: FromPath[str],
        app: AppDep,
        services: ServicesDep,
    ) -> None:
        if not valid_channel(channel):
            check_channels([channel], "channel")
        await client_tokens.check_joins(request, services, app, [channel])  # private: a token's claim
        with within_limits():
            found = await services.channels.set_channel(app.id, device_id, channel, True)
        if not found:
            raise not_found("device", device_id)

    @delete(
        "/{device_id:str}/channels/{channel:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Unsubscribe",
        responses=error_responses(400, 401, 404),
    )
    async def unsubscribe(
        self, device_id: FromPath[str], channel: FromPath[str], app: AppDep, services: ServicesDep
    ) -> None:
        if not valid_channel(channel):
            check_channels([channel], "channel")
        with within_limits():
            found = await services.channels.set_channel(app.id, device_id, channel, False)
        if not found:
            raise not_found("device", device_id)


def _identity(device: Device) -> str:
    """The token's identity key (a Web Push subscription's endpoint), as registration made it."""
    spec = registry.find(device.provider)
    if spec is None or spec.token_parser is None:
        return device.token
    return spec.token_parser(device.token, True)[1]
