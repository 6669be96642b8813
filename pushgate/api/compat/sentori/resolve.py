"""Finding the native devices a Sentori or Expo send names, before it is admitted.

Sentori and Expo address devices by things the native API has no recipient type for (an
installId, an Expo push token, a bare native token without its provider); each is looked up
among the app's **active** devices here, through the device store's own filters, and becomes a
native ``device`` recipient. A name that finds nothing is Sentori's "no device" (an empty
ticket list) and Expo's ``DeviceNotRegistered`` ticket: both systems answer so, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable

from pushgate.api.compat.sentori.mapping import EXPO_TAG, INSTALL_TAG
from pushgate.api.services import Services
from pushgate.providers import registry
from pushgate.store.devices import Device, DeviceFilter
from pushgate.store.registrations import token_hash

#: Device ids read per statement.
_CHUNK = 500
#: Devices one installId or Expo token may name (one, unless registered twice natively).
_PER_NAME = 10


async def active_by_id(services: Services, app_id: str, ids: Iterable[str]) -> dict[str, Device]:
    """The active devices among ``ids``, by id."""
    wanted = sorted(set(ids))
    out: dict[str, Device] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found, _ = await services.devices.list_devices(
            app_id, DeviceFilter(ids=chunk, status="active"), cursor=None, limit=len(chunk)
        )
        out.update((d.id, d) for d in found)
    return out


async def by_tag(
    services: Services, app_id: str, tag: str, value: str, *, active: bool = True
) -> list[Device]:
    """The devices whose tag ``tag`` is ``value`` (active ones unless ``active`` is False)."""
    found, _ = await services.devices.list_devices(
        app_id,
        DeviceFilter(tags={tag: value}, status="active" if active else None),
        cursor=None,
        limit=_PER_NAME,
        include=("tags",),
    )
    return found


async def by_install(services: Services, app_id: str, install_id: str) -> list[str]:
    return [d.id for d in await by_tag(services, app_id, INSTALL_TAG, install_id)]


async def by_expo_token(services: Services, app_id: str, token: str) -> list[str]:
    return [d.id for d in await by_tag(services, app_id, EXPO_TAG, token)]


async def by_native_token(services: Services, app_id: str, tokens: Iterable[str]) -> dict[str, list[str]]:
    """Active devices by their provider token, whatever the provider (Sentori's
    ``nativeTokens`` carry no provider): each token's identity under every provider that
    accepts its form, found in one read."""
    allow = services.settings.outbound.allowance(services.settings.devices.allow_loopback_endpoints)
    owner: dict[str, str] = {}
    for token in set(tokens):
        for spec in registry.specs():
            try:
                _, key = spec.normalize_token(token, allow)
            except ValueError:
                continue
            owner[token_hash(spec.name, key)] = token
    out: dict[str, list[str]] = {}
    hashes = sorted(owner)
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[start : start + _CHUNK]
        found, _ = await services.devices.list_devices(
            app_id,
            DeviceFilter(provider_token_hashes=chunk, status="active"),
            cursor=None,
            limit=len(chunk) * 2,
        )
        for dev in found:
            dev_spec = registry.find(dev.provider)
            try:
                _, key = dev_spec.normalize_token(dev.token, allow) if dev_spec else ("", "")
            except ValueError:
                continue
            named = owner.get(token_hash(dev.provider, key))
            if named is not None:
                out.setdefault(named, []).append(dev.id)
    return out
