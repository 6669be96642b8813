"""What a template may read of the devices of one dispatch chunk (docs/templates.md).

One query per chunk: the devices' own columns with their tags joined (a device has at most 64
tags), by primary key. A device deleted since planning is simply absent: the dispatcher takes
it out of the chunk anyway (``DEVICE_REMOVED``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa

from pushgate.domain.personalize import DeviceVars
from pushgate.store.db import Database
from pushgate.store.schema import device_tags, devices

_VARS = (
    sa.select(
        devices.c.id,
        devices.c.user,
        devices.c.locale,
        devices.c.platform,
        devices.c.provider,
        devices.c.meta,
        device_tags.c.key,
        device_tags.c.value,
    )
    .select_from(devices.outerjoin(device_tags, device_tags.c.device_id == devices.c.id))
    .where(devices.c.id.in_(sa.bindparam("ids", expanding=True)))
)


async def device_vars(db: Database, ids: Sequence[str]) -> dict[str, DeviceVars]:
    """``DeviceVars`` of each of ``ids`` that exists, by id."""
    if not ids:
        return {}
    found: dict[str, DeviceVars] = {}
    async with db.read() as conn:
        rows = (await conn.execute(_VARS, {"ids": list(dict.fromkeys(ids))})).all()
    for r in rows:
        d = found.get(r.id)
        if d is None:
            meta = json.loads(r.meta) if r.meta else {}
            d = found[r.id] = DeviceVars(r.id, r.user, r.locale, r.platform, r.provider, meta, {})
        if r.key is not None:
            d.tags[r.key] = r.value
    return found
