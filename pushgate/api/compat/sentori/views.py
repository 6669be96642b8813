"""Native publishes and delivery records in Sentori's and Expo's answer shapes.

Why here and not in the routes: Sentori's delivery, its older per-send receipt and Expo's push
receipt are three wordings of the same native record, and a status must read the same in all
three (a native ``suppressed`` for ``preference`` is Sentori's ``PreferenceOptedOut`` wherever
it shows).
"""

from __future__ import annotations

from typing import Any

from pushgate.api.compat.sentori.mapping import delivery_id, handle_of
from pushgate.domain.status import DeliveryStatus, PublishStatus
from pushgate.domain.timefmt import rfc3339
from pushgate.store.publishes import Publish

#: Native delivery statuses that have no outcome yet (Sentori ``queued``; no Expo receipt yet).
WAITING = frozenset({DeliveryStatus.PENDING, DeliveryStatus.RETRYING, DeliveryStatus.HELD})
_DONE = frozenset(
    {PublishStatus.COMPLETED, PublishStatus.FAILED, PublishStatus.EXPIRED, PublishStatus.CANCELLED}
)
#: Native counters Sentori counts as ``failed`` (nothing was delivered and nothing will be).
_NOT_SENT = ("failed", "invalid_token", "expired", "cancelled", "suppressed", "skipped")
#: Native reasons Sentori has its own word for.
_OUTCOMES = {"preference": "PreferenceOptedOut", "quiet_hours": "suppressed-quiet-hours"}


def status_of(status: str) -> str:
    """Sentori's delivery status: queued, sent or failed."""
    if status in WAITING:
        return "queued"
    return "sent" if status == DeliveryStatus.SENT else "failed"


def outcome_of(row: Any) -> str | None:
    """Sentori's ``providerOutcome``: the provider's (or policy's) word for what happened."""
    if row.status == DeliveryStatus.SENT:
        return "Success"
    if row.status == DeliveryStatus.INVALID_TOKEN:
        return "PermanentlyInvalidToken"
    if row.status in (DeliveryStatus.SUPPRESSED, DeliveryStatus.SKIPPED):
        return _OUTCOMES.get(row.error_code or "", f"{row.status}-{row.error_code or 'unknown'}")
    code: str | None = row.error_code
    return code


def _handle(row: Any) -> str | None:
    return handle_of(row.device_id) if row.device_id else None


def delivery_view(row: Any) -> dict[str, Any]:
    """``GET /v1/push/deliveries/{id}`` (and each item of a send's deliveries)."""
    return {
        "deliveryId": delivery_id(row.publish_id, row.recipient_id),
        "sendId": row.publish_id,
        "spToken": _handle(row),
        "status": status_of(row.status),
        "provider": row.provider,
        "providerOutcome": outcome_of(row),
        "error": row.error_message,
        "sentAt": rfc3339(row.sent_at),
        "deliveredAt": rfc3339(row.delivered_at),
        "retryCount": max(int(row.attempts) - 1, 0),
    }


def receipt_view(row: Any) -> dict[str, Any]:
    """The overview's ``GET /v1/push/receipts/{sendId}`` (snake_case, as Sentori wrote it)."""
    return {
        "send_id": delivery_id(row.publish_id, row.recipient_id),
        "status": status_of(row.status),
        "provider": row.provider,
        "provider_outcome": outcome_of(row),
        "error": row.error_message,
        "sent_at": rfc3339(row.sent_at),
        "acked_at": rfc3339(row.delivered_at),
        "retry_count": max(int(row.attempts) - 1, 0),
    }


def ticket_view(row: Any) -> dict[str, Any]:
    """One recipient of a send as the send's answer lists it."""
    out: dict[str, Any] = {
        "id": delivery_id(row.publish_id, row.recipient_id),
        "spToken": _handle(row),
        "status": "failed" if status_of(row.status) == "failed" else "ok",
    }
    if out["status"] == "failed":
        out["providerOutcome"] = outcome_of(row)
    return out


def send_view(pub: Publish, receipts: dict[str, int]) -> dict[str, Any]:
    """``GET /v1/push/sends/{sendId}``: the publish's state and counts in Sentori's words
    (``receipts``: its receipt counters; ``delivered`` is Sentori's acks)."""
    c = pub.counts
    planned = int(c.get("planned", 0))
    not_sent = sum(int(c.get(k, 0)) for k in _NOT_SENT)
    sent = int(c.get("sent", 0))
    reasons: dict[str, int] = {}
    for _cls, code, n in pub.failures or ():
        reasons[code or "unknown"] = reasons.get(code or "unknown", 0) + n
    for kind in ("suppressed", "skipped"):
        for code, n in pub.reasons.get(kind, {}).items():
            word = _OUTCOMES.get(code, f"{kind}-{code}")
            reasons[word] = reasons.get(word, 0) + n
    out: dict[str, Any] = {
        "sendId": pub.public_id,
        "state": "done" if pub.status in _DONE else "in_flight",
        "status": pub.status,
        "createdAt": rfc3339(pub.created_at),
        "lastSentAt": rfc3339(pub.completed_at or pub.started_at),
        "counts": {
            "total": planned,
            "queued": max(planned - sent - not_sent, 0),
            "sent": sent,
            "failed": not_sent,
            "delivered": int(receipts.get("delivered", 0)),
        },
        "reasons": [{"reason": r, "count": n} for r, n in sorted(reasons.items(), key=lambda x: -x[1])],
    }
    if pub.status == PublishStatus.SCHEDULED:
        out["scheduled"] = True
        out["sendAt"] = rfc3339(pub.send_at)
    if pub.campaign:
        out["campaignId"] = pub.campaign
    for label in ("templateId", "audienceTag", "preferenceCategory"):
        if pub.labels and label in pub.labels:
            out[label] = pub.labels[label]
    return out


# ---- Expo ------------------------------------------------------------------------------------

_EXPO_ERRORS = {
    "payload": "MessageTooBig",
    "quota": "MessageRateExceeded",
    "credential": "InvalidCredentials",
}


def expo_receipt(row: Any) -> dict[str, Any] | None:
    """Expo's push receipt of a record; None while it has no outcome (Expo leaves it out)."""
    if row.status in WAITING:
        return None
    if row.status == DeliveryStatus.SENT:
        return {"status": "ok"}
    if row.status == DeliveryStatus.INVALID_TOKEN:
        return {
            "status": "error",
            "message": "The recipient device is not registered with the push provider anymore",
            "details": {"error": "DeviceNotRegistered"},
        }
    error = _EXPO_ERRORS.get(row.error_class or "", outcome_of(row) or row.status)
    return {
        "status": "error",
        "message": row.error_message or f"not delivered: {outcome_of(row) or row.status}",
        "details": {"error": error},
    }


def not_registered(to: str) -> dict[str, Any]:
    """Expo's ticket for a recipient it cannot reach."""
    return {
        "status": "error",
        "message": f'"{to}" is not a registered push notification recipient',
        "details": {"error": "DeviceNotRegistered", "expoPushToken": to},
    }
