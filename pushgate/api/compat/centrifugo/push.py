"""``send_push_notification``, ``update_push_status``, ``cancel_push``: a Centrifugo push is a
native publish (``admit_publish``, the one send path), its ``uid`` the publish's client id
(``GET /v1/publishes/{uid}`` shows it), its provider-native payloads the publish's per-provider
overrides, its ``limit_strategy`` the publish's delivery window and frequency caps, and a push
status a receipt on the delivery.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import msgspec

from pushgate.api.compat.centrifugo import schemas as s
from pushgate.api.compat.centrifugo.protocol import (
    CONFLICT,
    Call,
    CentrifugoError,
    bad,
    not_available,
    not_found,
    params_of,
)
from pushgate.api.publishes import admit_publish
from pushgate.api.schemas import PublishIn
from pushgate.domain.receipts import ReceiptEvent
from pushgate.domain.status import PublishStatus
from pushgate.domain.timefmt import rfc3339
from pushgate.store.publishes import Receipt, ReceiptResult

#: What a uid may be: a publish's client id (``publish_id``, docs/campaigns.md); a UUID is one.
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}")
#: An analytics uid other than the uid becomes the publish's campaign.
_CAMPAIGN = re.compile(r"[^/\x00-\x1f\x7f]{1,200}")
#: Centrifugo's push statuses → the native receipt events.
_STATUSES = {"delivered": ReceiptEvent.DELIVERED, "interacted": ReceiptEvent.OPENED}
#: Publishes of one ``analytics_uid`` (a campaign) an ``update_push_status`` looks through.
MAX_ANALYTICS_PUBLISHES = 100


def _recipients(r: s.PushRecipient) -> list[dict[str, Any]]:
    """Exactly one of the recipient's fields, as native recipients."""
    given = [name for name in s.PushRecipient.__struct_fields__ if getattr(r, name) is not None]
    if len(given) != 1:
        raise bad(
            "params.recipient: set exactly one of filter, fcm_tokens, fcm_topic, fcm_condition, "
            "hms_tokens, hms_topic, hms_condition, apns_tokens, webpush_tokens"
            + (f" (got {', '.join(given)})" if given else "")
        )
    name = given[0]
    value = getattr(r, name)
    if name == "filter":
        return _filter_recipients(value)
    if name == "device_ids":
        return [{"type": "device", "device_id": i} for i in value]
    if name == "channels":
        return [{"type": "channel", "channel": c} for c in value]
    if name.endswith("_tokens"):
        provider = name.removesuffix("_tokens")
        return [{"type": "token", "provider": provider, "token": t} for t in value]
    kind = name.split("_", 1)[1]  # fcm_topic → topic
    return [{"type": name, kind: value}]


def _filter_recipients(f: s.DeviceFilter) -> list[dict[str, Any]]:
    """Centrifugo's device filter (every given field must match; inside one, any value): ids,
    users or topics alone are device, user and channel recipients; anything combined is a
    native audience filter (docs/filters.md)."""
    fields = {k: v for k, v in msgspec.structs.asdict(f).items() if v}
    if not fields:
        raise bad("params.recipient.filter: give at least one of ids, users, topics, providers, platforms")
    if "ids" in fields:
        if len(fields) > 1:
            raise not_available("recipient.filter.ids together with other filter fields (send to ids alone)")
        return [{"type": "device", "device_id": i} for i in fields["ids"]]
    if list(fields) == ["users"]:
        return [{"type": "user", "user": u} for u in fields["users"]]
    if list(fields) == ["topics"]:
        return [{"type": "channel", "channel": c} for c in fields["topics"]]
    leaves: list[dict[str, Any]] = []
    if "users" in fields:
        leaves.append({"user": {"in": fields["users"]}})
    if "topics" in fields:
        leaves.append({"channels": {"any": fields["topics"]}})
    if "providers" in fields:
        leaves.append({"provider": {"in": fields["providers"]}})
    if "platforms" in fields:
        leaves.append({"platform": {"in": fields["platforms"]}})
    return [{"type": "filter", "filter": leaves[0] if len(leaves) == 1 else {"all": leaves}}]


def _overrides(n: s.PushNotification) -> dict[str, Any]:
    """The provider-native payloads, as the publish's per-provider overrides (deep-merged over
    an empty rendering: exactly what the app wrote reaches the provider)."""
    out: dict[str, Any] = {}
    if n.fcm is not None:
        out["fcm"] = {"message": n.fcm.message}
    if n.hms is not None:
        out["hms"] = {"message": n.hms.message}
    if n.apns is not None:
        out["apns"] = {"payload": n.apns.payload, **({"headers": n.apns.headers} if n.apns.headers else {})}
    if n.webpush is not None:
        payload = n.webpush.payload
        if isinstance(payload, str):
            try:
                payload = msgspec.json.decode(payload)
            except msgspec.DecodeError:
                payload = None
        if not isinstance(payload, dict):
            raise not_available("notification.webpush.payload that is not a JSON object")
        out["webpush"] = {"payload": payload, **({"headers": n.webpush.headers} if n.webpush.headers else {})}
    if not out:
        raise bad("params.notification: give at least one of fcm, hms, apns, webpush")
    return out


def _limits(ls: s.LimitStrategy) -> dict[str, Any]:
    """``limit_strategy`` as the publish's delivery window and frequency caps (docs/policy.md)."""
    out: dict[str, Any] = {}
    if ls.time_limit is not None:
        t = ls.time_limit
        out["deliver_between"] = {"start": t.send_after_time, "end": t.send_before_time}
        if t.no_tz_send_now:
            out["no_timezone"] = "send_now"
    if ls.rate_limit is not None:
        rl = ls.rate_limit
        if "device.user" in rl.key:
            per = "user"
        elif not rl.key or "device.id" in rl.key:
            per = "device"
        else:
            raise not_available(f"limit_strategy.rate_limit.key {rl.key!r} (only device.id or device.user)")
        caps = []
        for i, pol in enumerate(rl.policies):
            if pol.interval_ms % 1000:
                raise bad(
                    f"params.limit_strategy.rate_limit.policies[{i}].interval_ms: pushgate's frequency "
                    "caps count whole seconds; give a multiple of 1000"
                )
            caps.append(
                {
                    "limit": pol.rate,
                    "window_seconds": pol.interval_ms // 1000,
                    "per": per,
                    "action": "drop" if rl.drop_if_rate_limited else "delay",
                }
            )
        out["frequency_caps"] = caps
    return out


def publish_body(p: s.SendPushNotification, uid: str) -> dict[str, Any]:
    """The native ``POST /v1/publish`` body a Centrifugo push means."""
    if p.use_templating or p.localizations or p.use_meta:
        raise not_available(
            "use_templating, use_meta and localizations (Go templates over provider payloads); "
            "use a native template (POST /v1/templates) through /v1/publish"
        )
    body: dict[str, Any] = {
        "recipients": _recipients(p.recipient),
        "providers": _overrides(p.notification),
        "publish_id": uid,
    }
    if p.notification.expire_at:
        body["expire_at"] = rfc3339(p.notification.expire_at)
    if p.send_at:
        body["send_at"] = rfc3339(p.send_at)
    if p.analytics_uid and p.analytics_uid != uid:
        body["campaign"] = p.analytics_uid
    if p.limit_strategy is not None:
        body.update(_limits(p.limit_strategy))
    return body


async def send_push_notification(call: Call, raw: Any) -> dict[str, Any]:
    p: s.SendPushNotification = params_of(raw, s.SendPushNotification)
    if p.uid and p.notification.uid and p.uid != p.notification.uid:
        raise bad("params: uid and notification.uid differ; give one")
    # Centrifugo makes up a uid when none is given: so does this, so that every push can be
    # cancelled and reported on by the uid it answers.
    uid = p.uid or p.notification.uid or str(uuid.uuid4())
    if not _UID.fullmatch(uid) or uid.startswith("pub_"):
        raise bad(
            "params.uid: 1-200 of A-Z a-z 0-9 _ . : -, starting with a letter or digit, "
            "not pub_ (a UUID is fine)"
        )
    if p.analytics_uid and not _CAMPAIGN.fullmatch(p.analytics_uid):
        raise bad("params.analytics_uid: 1-200 characters, no / and no control characters")
    data: PublishIn = params_of(publish_body(p, uid), PublishIn)
    pub, _created = await admit_publish(call.app, call.services, data)
    return {"uid": pub.public_id}


async def _publishes_of(call: Call, uid: str) -> list[str]:
    """The server ids of the app's publishes a push uid or analytics uid names."""
    found = await call.services.publishes.resolve(call.app.id, uid)
    if found is not None:
        return [found]
    pubs, _ = await call.services.publishes.list_publishes(
        call.app.id, cursor=None, limit=MAX_ANALYTICS_PUBLISHES, campaign=uid
    )
    return [p.id for p in pubs]


async def update_push_status(call: Call, raw: Any) -> dict[str, Any]:
    """A device reports a push delivered or interacted with: a receipt (``delivered`` or
    ``opened``) on its delivery, counted once on the publish however often it is reported."""
    p: s.UpdatePushStatus = params_of(raw, s.UpdatePushStatus)
    uid = p.analytics_uid or p.uid
    if not uid:
        raise bad("params.analytics_uid: required (the uid send_push_notification answered)")
    event = _STATUSES.get(p.status)
    if event is None:
        raise bad(f"params.status: {p.status!r}; use delivered or interacted")
    if not p.device_id:
        raise bad("params.device_id: required (pushgate records a status on one device's delivery)")
    now = time.time()
    for publish_id in await _publishes_of(call, uid):
        async with call.services.db.write() as conn:
            rec = await call.services.publishes.record_receipt(
                conn,
                call.app.id,
                Receipt(publish_id, p.device_id, event, now),
                webhooks=call.services.webhooks,
            )
        if rec.result is not ReceiptResult.NOT_FOUND:
            return {}
    raise not_found(f"no push {uid!r} to device {p.device_id!r}")


async def cancel_push(call: Call, raw: Any) -> dict[str, Any]:
    """Cancel a push: nothing of it not yet sent is sent (a delayed one: nothing at all)."""
    p: s.CancelPush = params_of(raw, s.CancelPush)
    if not p.uid:
        raise bad("params.uid: required")
    publish_id = await call.services.publishes.resolve(call.app.id, p.uid)
    pub, changed = (
        (None, False) if publish_id is None else await call.services.publishes.cancel(call.app.id, publish_id)
    )
    if pub is None:
        raise not_found(f"push {p.uid!r}")
    if not changed and pub.status != PublishStatus.CANCELLED:
        raise CentrifugoError(CONFLICT, f"push {p.uid!r} is already {pub.status}")
    return {}
