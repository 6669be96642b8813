"""Fleet questions (docs/filters.md): device search by audience filter, the audience count of a
recipient list, and device stats.

``GET /v1/devices?filter=`` is served by ``DeviceController.list_devices`` (one route per path),
which hands the filter to :func:`search_page` here; ``POST /v1/devices/search`` takes the same
in a body (a filter too long for a URL). Counting is time-bounded
(``store/filters.py:COUNT_SECONDS``): a count past it is a ``503 count_timeout``, not a request
that holds a connection for minutes.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from pushgate.api import cursors
from pushgate.api.common import page_limit
from pushgate.api.device_views import device_out
from pushgate.api.errors import ApiError, bad_request, error_responses
from pushgate.api.publish_batch import stored_recipients
from pushgate.api.schemas import DeviceOut, DevicePage, PublishIn, Recipient, Strict
from pushgate.api.schemas_filter import AudienceCountOut, DeviceSearchIn, DeviceStatsOut
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.filters import MAX_DEPTH, FilterError, Node, parse
from pushgate.engine.housekeeping import seen_after
from pushgate.store.devices import DeviceFilter
from pushgate.store.filters import CountTimeout, FilterStore, condition, device_stats, recipients_condition

#: The longest ``?filter=`` (a longer filter goes in the body of ``POST /v1/devices/search``).
MAX_QUERY_FILTER = 8192


class AudienceCountIn(Strict):
    #: Exactly a publish's ``recipients`` (``POST /v1/publish``).
    recipients: Annotated[list[Recipient], msgspec.Meta(min_length=1)]


def parsed(raw: Any, where: str) -> Node:
    """The parsed filter, or a 400 naming the place inside it (``filter.all[2].tag``)."""
    try:
        return parse(raw, where)
    except FilterError as exc:
        raise bad_request(str(exc), {"path": exc.path}) from None


def query_filter(text: str) -> Node:
    """``?filter=`` (JSON text) parsed."""
    if len(text) > MAX_QUERY_FILTER:
        raise bad_request(f"filter: longer than {MAX_QUERY_FILTER} characters; use POST /v1/devices/search")
    try:
        raw = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise bad_request(f"filter: not JSON ({exc})") from None
    except RecursionError:
        raise bad_request(f"filter: nested too deep: at most {MAX_DEPTH} levels of all/any/not") from None
    return parsed(raw, "filter")


def _timeout() -> ApiError:
    return ApiError(
        503, "count_timeout", "counting took too long; narrow the filter (an indexed leaf first) or retry"
    )


async def search_page(
    services: ServicesDep,
    app_id: str,
    node: Node,
    *,
    cursor: str | None,
    limit: int | None,
    include: set[str],
    total: bool,
) -> DevicePage:
    """One page of the app's active devices ``node`` matches (with ``meta``/``tags``/``channels``
    when ``include`` names them), and their total when asked."""
    store = FilterStore(services.db)
    devs, nxt = await store.search(
        app_id, node, cursor=cursors.decode_one(cursor), limit=page_limit(limit, services.settings)
    )
    if devs and include:
        # The same rows, with their attachments: read as GET /v1/devices reads them.
        full, _ = await services.devices.list_devices(
            app_id, DeviceFilter(ids=[d.id for d in devs]), cursor=None, limit=len(devs), include=include
        )
        devs = full
    count = None
    if total:
        try:
            count = (await store.count(app_id, condition(node, app_id, services.db.dialect)))[0]
        except CountTimeout:
            raise _timeout() from None
    items: list[DeviceOut] = [device_out(d) for d in devs]
    return DevicePage(items, cursors.encode_next(nxt), total_count=count)


class DeviceSearchController(Controller):
    path = "/devices"
    tags = ["devices"]

    @post(
        "/search",
        status_code=HTTP_200_OK,
        summary="Search the app's active devices with an audience filter",
        description='The filter language of `{"type": "filter"}` recipients (docs/filters.md); '
        "pages by device id like `GET /v1/devices`. `include_total_count` adds `total_count`.",
        responses=error_responses(400, 401, 403, 503),
    )
    async def search(self, data: JSONBody[DeviceSearchIn], app: AppDep, services: ServicesDep) -> DevicePage:
        node = parsed(data.filter, "filter")
        return await search_page(
            services,
            app.id,
            node,
            cursor=data.cursor,
            limit=data.limit,
            include=set(data.include or ()),
            total=data.include_total_count,
        )


class AudienceController(Controller):
    path = "/"
    tags = ["audience"]

    @post(
        "/audience/count",
        status_code=HTTP_200_OK,
        summary="Count the devices and users a recipient list would reach, without sending",
        description="Active devices (not stale) reached by any of the recipients, each once, as "
        "a publish would plan them; raw tokens not registered and native targets count no device.",
        responses=error_responses(400, 401, 403, 503),
    )
    async def count(
        self, data: JSONBody[AudienceCountIn], app: AppDep, services: ServicesDep
    ) -> AudienceCountOut:
        limit = services.settings.limits.max_recipients_per_publish
        if len(data.recipients) > limit:
            raise bad_request(f"recipients: at most {limit} entries (limits.max_recipients_per_publish)")
        # Checks every filter against one budget for the whole list (a 400 past it).
        entries, _ = stored_recipients(PublishIn(recipients=data.recipients), services)
        nodes = [parse(e["filter"]) if e["type"] == "filter" else None for e in entries]
        where = recipients_condition(entries, app.id, services.db.dialect, nodes)
        try:
            n, users = await FilterStore(services.db).count(app.id, where, seen_after(services.settings))
        except CountTimeout:
            raise _timeout() from None
        return AudienceCountOut(devices=n, users=users)

    @get(
        "/stats/devices",
        summary="Device counts by status, provider, platform, locale and last seen",
        responses=error_responses(401, 403),
    )
    async def device_stats(self, app: AppDep, services: ServicesDep) -> DeviceStatsOut:
        return msgspec.convert(await device_stats(services.db, app.id, time.time()), DeviceStatsOut)
