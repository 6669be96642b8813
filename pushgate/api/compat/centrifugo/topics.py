"""``device_topic_update``/``_list`` and ``user_topic_update``/``_list`` (and the seed document's
``push_user_channel_update``/``_list``): Centrifugo's topics are pushgate's channels, a device's
own subscriptions and a user's bindings (applied to every device of the user, now and at each
registration), in the native stores.
"""

from __future__ import annotations

from typing import Any

from pushgate.api import cursors
from pushgate.api.common import check_channels, page_limit
from pushgate.api.compat.centrifugo import schemas as s
from pushgate.api.compat.centrifugo.devices import device_out
from pushgate.api.compat.centrifugo.protocol import (
    CONFLICT,
    Call,
    CentrifugoError,
    bad,
    not_available,
    not_found,
    params_of,
)
from pushgate.api.limits import within_limits
from pushgate.store.devices import Device, DeviceFilter

#: Device pages one ``device_topic_list`` reads at most before answering with what it found
#: (and a cursor to go on): a ``topic_prefix`` no device has must not scan the whole registry.
MAX_SCAN_PAGES = 10


async def device_topic_update(call: Call, raw: Any) -> dict[str, Any]:
    p: s.DeviceTopicUpdate = params_of(raw, s.DeviceTopicUpdate)
    if not p.device_id:
        raise bad("params.device_id: required")
    check_channels(p.topics, "params.topics")
    if p.op != "set" and not p.topics:
        raise bad("params.topics: give at least one topic for add/remove")
    device = await call.services.devices.get(call.app.id, p.device_id)
    if device is None:
        raise not_found(f"device {p.device_id!r}")
    if p.user and (device.user or "") != p.user:
        raise CentrifugoError(CONFLICT, f"device {p.device_id!r} does not belong to user {p.user!r}")
    with within_limits():
        await call.services.devices.update(
            call.app.id, DeviceFilter(ids=[p.device_id]), channels_op=p.op, channels=p.topics
        )
    return {}


def _pair_id(first: str, second: str) -> str:
    """A stable id for a (device or user, topic) pair: the cursor that starts after it."""
    return cursors.encode_next((first, second)) or ""


async def device_topic_list(call: Call, raw: Any) -> dict[str, Any]:
    """(device, topic) pairs, by device id then topic. Read from the device registry page by
    page (the topics of each device), so a filter that matches few pairs answers a short page
    with a ``next_cursor`` rather than scanning everything in one request."""
    p: s.DeviceTopicList = params_of(raw, s.DeviceTopicList)
    if p.include_total_count:
        raise not_available("device_topic_list include_total_count")
    flt = p.filter or s.DeviceTopicFilter()
    limit = page_limit(p.limit or None, call.services.settings)
    after = cursors.decode(p.cursor or None, 2)
    f = DeviceFilter(
        ids=flt.device_ids or None,
        users=flt.device_users or None,
        providers=flt.device_providers or None,
        platforms=flt.device_platforms or None,
        channels=flt.topics or None,
        status="active",
    )
    wanted = set(flt.topics or ())
    items: list[dict[str, Any]] = []
    last: tuple[str, str] | None = None
    more = False
    dev_cursor: str | None = None
    if after is not None:
        # The device the previous page stopped in may have more topics: read it again.
        first = await call.services.devices.list_devices(
            call.app.id, _with_ids(f, [after[0]]), cursor=None, limit=1, include={"channels"}
        )
        more, last = _take(first[0], after[1], wanted, flt.topic_prefix, p.include_device, items, limit)
        dev_cursor = after[0]
    pages = 0
    while not more and pages < MAX_SCAN_PAGES:
        devs, nxt = await call.services.devices.list_devices(
            call.app.id, f, cursor=dev_cursor, limit=limit, include={"channels"}
        )
        pages += 1
        more, got = _take(devs, None, wanted, flt.topic_prefix, p.include_device, items, limit)
        last = got or last
        if nxt is None:
            break
        dev_cursor = nxt
        if pages == MAX_SCAN_PAGES and not more:
            more, last = True, (dev_cursor, "\uffff")  # go on after this device next time
    return {
        "items": items,
        "next_cursor": _pair_id(*last) if more and last else "",
        "has_more": more,
    }


def _with_ids(f: DeviceFilter, ids: list[str]) -> DeviceFilter:
    if f.ids and ids[0] not in f.ids:
        ids = ["-"]  # the cursor's device is not in the filter: nothing to read again
    return DeviceFilter(
        ids=ids,
        users=f.users,
        providers=f.providers,
        platforms=f.platforms,
        channels=f.channels,
        status=f.status,
    )


def _take(
    devs: list[Device],
    after_topic: str | None,
    wanted: set[str],
    prefix: str,
    include_device: bool,
    items: list[dict[str, Any]],
    limit: int,
) -> tuple[bool, tuple[str, str] | None]:
    """Append the pairs of ``devs`` to ``items`` up to ``limit``; returns (page full with more
    to come, the last pair taken)."""
    last = None
    for d in devs:
        for topic in sorted(d.channels or ()):
            if after_topic is not None and topic <= after_topic:
                continue
            if (wanted and topic not in wanted) or (prefix and not topic.startswith(prefix)):
                continue
            if len(items) == limit:
                return True, last
            shown = device_out(d, topics=True) if include_device else {"id": d.id}
            items.append({"id": _pair_id(d.id, topic), "topic": topic, "device": shown})
            last = (d.id, topic)
    return False, last


async def user_topic_update(call: Call, raw: Any) -> dict[str, Any]:
    p: s.UserTopicUpdate = params_of(raw, s.UserTopicUpdate)
    if not p.user:
        raise bad("params.user: required")
    if p.topics is not None and p.channels is not None:
        raise bad("params: give topics or channels, not both")
    topics = p.topics if p.topics is not None else (p.channels or [])
    check_channels(topics, "params.topics")
    if p.op != "set" and not topics:
        raise bad("params.topics: give at least one topic for add/remove")
    with within_limits():
        await call.services.bindings.update_user_channels(call.app.id, p.user, p.op, topics)
    return {}


async def user_topic_list(call: Call, raw: Any) -> dict[str, Any]:
    p: s.UserTopicList = params_of(raw, s.UserTopicList)
    if p.include_total_count:
        raise not_available("user_topic_list include_total_count")
    flt = p.filter or s.UserTopicFilter()
    if p.cursor and p.since:
        raise bad("params: give cursor or since, not both")
    keys = cursors.decode(p.cursor or p.since or None, 2)
    items, nxt = await call.services.bindings.list_user_channels(
        call.app.id,
        users=flt.users or p.users or None,
        channels=flt.topics or p.channels or None,
        channel_prefix=flt.topic_prefix or p.channel_prefix or None,
        cursor=None if keys is None else (keys[0], keys[1]),
        limit=page_limit(p.limit or None, call.services.settings),
    )
    return {
        # ``channel`` is the seed document's name of ``topic``.
        "items": [{"id": _pair_id(u, c), "user": u, "topic": c, "channel": c} for u, c in items],
        "next_cursor": _pair_id(*nxt) if nxt else "",
        "has_more": nxt is not None,
    }
