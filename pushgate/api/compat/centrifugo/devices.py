"""``device_register``, ``device_update``, ``device_remove``, ``device_list``: Centrifugo's
device storage on the native registry (one registry: a device registered here is the same
device for ``/v1/devices`` and every other front-end; Centrifugo's topics are native channels).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pushgate.api import cursors
from pushgate.api.common import check_channels, normalize_token, page_limit
from pushgate.api.compat.centrifugo import schemas as s
from pushgate.api.compat.centrifugo.protocol import (
    CONFLICT,
    INTERNAL,
    Call,
    CentrifugoError,
    bad,
    params_of,
)
from pushgate.api.devices import register_device, registration
from pushgate.api.errors import ApiError
from pushgate.api.limits import within_limits
from pushgate.api.schemas import DeviceIn
from pushgate.api.services import Services
from pushgate.domain.filters import FilterError, parse
from pushgate.domain.registry import valid_timezone
from pushgate.providers import registry
from pushgate.store.devices import Device, DeviceFilter
from pushgate.store.filters import CountTimeout, FilterStore, condition
from pushgate.store.registrations import UNSET, DeviceConflict, token_hash


def device_out(d: Device, *, meta: bool = False, topics: bool = False, tags: bool = False) -> dict[str, Any]:
    """A native device as Centrifugo's ``Device`` (times in Unix seconds; ``topics`` are its
    channels, also under the seed document's name ``channels``)."""
    out: dict[str, Any] = {
        "id": d.id,
        "platform": d.platform,
        "provider": d.provider,
        "token": d.token,
        "user": d.user or "",
        "created_at": int(d.created_at),
        "updated_at": int(d.updated_at),
        "timezone": d.timezone or "",
        "locale": d.locale or "",
    }
    if meta:
        out["meta"] = d.meta or {}
    if topics:
        out["topics"] = sorted(d.channels or [])
        out["channels"] = out["topics"]
    if tags:
        out["tags"] = d.tags or {}
    return out


def _either(new: list[str] | None, old: list[str] | None, names: str) -> list[str] | None:
    if new is not None and old is not None:
        raise bad(f"give {names.split('/')[0]} or {names.split('/')[1]}, not both")
    return new if new is not None else old


async def device_register(call: Call, raw: Any) -> dict[str, Any]:
    """Register (or, with ``id`` or a known token, update) a device. Like Centrifugo, a
    registration replaces the device's whole state: a field left out is cleared, and its topics
    become the ones given plus those bound to its user (``user_topic_update``)."""
    p: s.DeviceRegister = params_of(raw, s.DeviceRegister)
    for name in ("provider", "token", "platform"):
        if not getattr(p, name):
            raise bad(f"params.{name}: required")
    topics = _either(p.topics, p.channels, "topics/channels")
    body: dict[str, Any] = {"provider": p.provider, "token": p.token, "platform": p.platform}
    if p.id:
        body["id"] = p.id
    if p.tags is not None:
        body["tags"] = p.tags
    device_in = params_of(body, DeviceIn)
    reg = registration(device_in, call.services.settings)
    if p.timezone and not valid_timezone(p.timezone):
        raise bad(f"params.timezone: {p.timezone!r} is not an IANA time zone (e.g. Europe/Berlin)")
    check_channels(topics, "params.topics")
    # Centrifugo's register replaces the whole state: what is left out is cleared.
    reg.user = p.user or None
    reg.meta = p.meta or None
    reg.channels = list(topics or [])
    reg.timezone = p.timezone or None
    reg.locale = p.locale or None
    try:
        device, _created = await register_device(call.app, call.services, reg)
    except DeviceConflict as exc:
        raise CentrifugoError(
            CONFLICT, f"this token is already registered as device {exc.args[0]}; register with that id"
        ) from None
    full = await call.services.devices.get(call.app.id, device.id)
    shown = full or device
    return {"id": device.id, "device": device_out(shown, meta=True, topics=True)}


def _hashes(services: Services, tokens: list[s.ProviderToken]) -> list[str]:
    out = []
    for pt in tokens:
        _, key = normalize_token(pt.provider, pt.token, services.settings)
        out.append(token_hash(pt.provider, key))
    return out


def _target(
    call: Call, ids: list[str] | None, users: list[str] | None, pts: list[s.ProviderToken] | None
) -> DeviceFilter:
    f = DeviceFilter(
        ids=ids or None,
        users=users or None,
        provider_token_hashes=_hashes(call.services, pts) if pts else None,
    )
    if f.is_empty():
        raise bad("params: give at least one non-empty filter: ids, users or provider_tokens")
    return f


async def device_update(call: Call, raw: Any) -> dict[str, Any]:
    p: s.DeviceUpdate = params_of(raw, s.DeviceUpdate)
    if p.topics_update and p.channels_update:
        raise bad("params: give topics_update or channels_update, not both")
    op: Any = None
    channels: list[str] = []
    if p.topics_update:
        op, channels = p.topics_update.op, p.topics_update.topics
    elif p.channels_update:
        op, channels = "set", p.channels_update.channels
    updates = (p.user_update, p.timezone_update, p.locale_update, p.meta_update, p.tags_update, op)
    if all(u is None for u in updates):
        raise bad(
            "params: nothing to update: give user_update, timezone_update, locale_update, "
            "meta_update or topics_update"
        )
    check_channels(channels, "params.topics_update.topics")
    tz = p.timezone_update.timezone if p.timezone_update else None
    if tz and not valid_timezone(tz):
        raise bad(f"params.timezone_update.timezone: {tz!r} is not an IANA time zone (e.g. Europe/Berlin)")
    f = _target(call, p.ids, p.users, p.provider_tokens)
    with within_limits():
        await call.services.devices.update(
            call.app.id,
            f,
            user=(p.user_update.user or None) if p.user_update else UNSET,
            meta=p.meta_update.meta if p.meta_update else UNSET,
            tags=p.tags_update.tags if p.tags_update else UNSET,
            channels_op=op,
            channels=channels,
            timezone=(tz or None) if p.timezone_update else UNSET,
            locale=(p.locale_update.locale or None) if p.locale_update else UNSET,
        )
    return {}


async def device_remove(call: Call, raw: Any) -> dict[str, Any]:
    p: s.DeviceRemove = params_of(raw, s.DeviceRemove)
    f = _target(call, p.ids, p.users, p.provider_tokens)
    with within_limits():
        await call.services.devices.remove(call.app.id, f)
    return {}


def _token_hashes(services: Services, tokens: list[str], providers: list[str] | None) -> list[str]:
    """A bare token (the seed's ``tokens`` filter) as the hash it would have under each
    provider it could belong to."""
    out = []
    for provider in providers or registry.names():
        for token in tokens:
            try:
                _, key = normalize_token(provider, token, services.settings)
            except ApiError:
                continue  # not a token of this provider
            out.append(token_hash(provider, key))
    return out or ["-"]


async def device_list(call: Call, raw: Any) -> dict[str, Any]:
    """A page of the app's active devices (Centrifugo removes dead tokens; pushgate keeps them
    as ``invalid``, which this list leaves out like Centrifugo's would)."""
    p: s.DeviceList = params_of(raw, s.DeviceList)
    flt = p.filter or s.DeviceFilter()
    ids = _either(flt.ids, p.ids, "filter.ids/ids")
    users = _either(flt.users, p.users, "filter.users/users")
    providers = _either(flt.providers, p.providers, "filter.providers/providers")
    platforms = _either(flt.platforms, p.platforms, "filter.platforms/platforms")
    if p.cursor and p.since:
        raise bad("params: give cursor or since, not both")
    services = call.services
    f = DeviceFilter(
        ids=ids or None,
        users=users or None,
        providers=providers or None,
        platforms=platforms or None,
        channels=flt.topics or None,
        provider_token_hashes=_token_hashes(services, p.tokens, providers) if p.tokens else None,
        status="active",
    )
    include = set()
    if p.include_meta:
        include.add("meta")
    if p.include_topics or p.include_channels:
        include.add("channels")
    if p.include_tags:
        include.add("tags")
    devs, nxt = await services.devices.list_devices(
        call.app.id,
        f,
        cursor=cursors.decode_one(p.cursor or p.since or None),
        limit=page_limit(p.limit or None, services.settings),
        include=include,
    )
    out: dict[str, Any] = {
        "items": [
            device_out(d, meta=p.include_meta, topics=bool({"channels"} & include), tags=p.include_tags)
            for d in devs
        ],
        "next_cursor": cursors.encode_next(nxt) or "",
        "has_more": nxt is not None,
    }
    if p.include_total_count:
        out["total_count"] = await _total(call, f, flt.topics)
    return out


async def _total(call: Call, f: DeviceFilter, topics: list[str] | None) -> int:
    """How many active devices the list's filter matches (without reading them)."""
    if f.ids or f.provider_token_hashes:
        # Bounded by the ids/tokens given (at most 1000 each): count what matches them.
        devs, _ = await call.services.devices.list_devices(call.app.id, f, cursor=None, limit=100_000)
        return len(devs)
    leaves: list[dict[str, Any]] = []
    if f.users:
        leaves.append({"user": {"in": f.users}})
    if f.providers:
        leaves.append({"provider": {"in": f.providers}})
    if f.platforms:
        leaves.append({"platform": {"in": f.platforms}})
    if topics:
        leaves.append({"channels": {"any": topics}})
    db = call.services.db
    try:
        where = condition(parse({"all": leaves}), call.app.id, db.dialect) if leaves else sa.true()
    except FilterError as exc:
        raise bad(f"params.filter: {exc.message}") from None
    try:
        return (await FilterStore(db).count(call.app.id, where))[0]
    except CountTimeout:
        raise CentrifugoError(
            INTERNAL, "counting took too long; narrow the filter or leave out include_total_count"
        ) from None
