"""A device as the API shows it (``DeviceOut``), shared by the device, channel and search routes."""

from __future__ import annotations

from pushgate.api.schemas import DeviceOut
from pushgate.domain.timefmt import rfc3339
from pushgate.store.devices import Device


def device_out(d: Device) -> DeviceOut:
    return DeviceOut(
        id=d.id,
        provider=d.provider,
        token=d.token,
        platform=d.platform,
        status=d.status,
        created_at=rfc3339(d.created_at) or "",
        updated_at=rfc3339(d.updated_at) or "",
        last_seen_at=rfc3339(d.last_seen_at) or "",
        user=d.user,
        locale=d.locale,
        timezone=d.timezone,
        environment=d.environment,
        invalid_reason=d.invalid_reason,
        invalidated_at=rfc3339(d.invalidated_at),
        app_version=d.app_version,
        meta=d.meta,
        tags=d.tags,
        channels=d.channels,
    )
