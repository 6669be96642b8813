"""Policy at planning: which of a page's recipients may go now, later, or not at all.

Applied inside the page's own transaction (the planner's page, or admission's commit for a small
publish), before the delivery records are inserted, so a decision and its records commit
together: a crash re-plans the page and the frequency-cap counters it took roll back with it.
Each row leaves with a status the counters understand: untouched (sent now), ``held`` with a
``release_at`` and the rule (its release batch is queued to run then), ``suppressed`` or
``skipped`` with the reason, or ``expired`` when its window opens after the notification's
deadline. Nothing policy decides is dropped without a record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushgate.domain.policy import AppPolicy, Decision, PublishPolicy, QuietHours, TimeRules
from pushgate.domain.status import DeliveryStatus
from pushgate.store.caps import CapRequest, take
from pushgate.store.db import Database
from pushgate.store.policies import (
    SNAPSHOT_SECONDS,
    PolicyStore,
    has_user_quiet_hours,
    opted_out,
    user_quiet_hours_of,
)
from pushgate.store.realtime_acks import ACKED, acked_users

#: A release any later than "now" is a hold (a window opening in 0.3 s is not opened early).
_HOLD_AFTER = 0.0


@dataclass(frozen=True, slots=True)
class PagePolicy:
    """What policy planning needs about one publish, loaded once per plan job (or admission)."""

    app_id: str
    publish: PublishPolicy
    app: AppPolicy
    expire_at: float | None = None
    #: Only these providers have a payload (a publish of native payloads only); None: all.
    payload_providers: frozenset[str] | None = None
    #: The publish's category's default (True: opted in unless the user said no).
    category_default: bool = True
    #: Whether the app has users with quiet hours of their own (else no lookup per page).
    user_quiet: bool = False
    #: A dry run (docs/campaigns.md): takes no frequency-cap slots (every row is inside its
    #: caps), and its held rows are released at once (``planning.py``).
    dry_run: bool = False
    #: The publish is ``realtime: first`` and its sessions were reached: a user who acked on
    #: one of them gets no push (``skipped``, ``realtime_acked``; docs/realtime.md).
    realtime_first: bool = False

    @property
    def active(self) -> bool:
        """Whether any rule can change a row (else planning skips this module entirely)."""
        p, a = self.publish, self.app
        return bool(
            self.realtime_first
            or self.payload_providers is not None
            or p.category is not None
            or p.window is not None
            or p.local_time is not None
            or p.caps_for(a)
            or (not p.critical and (a.quiet_hours is not None or self.user_quiet))
        )


def _stop(r: dict[str, Any], status: DeliveryStatus, reason: str, message: str) -> None:
    r["status"], r["error_code"], r["error_message"] = status.value, reason, message


def _hold(r: dict[str, Any], reason: str, release_at: float) -> None:
    r["status"], r["error_code"], r["release_at"] = DeliveryStatus.HELD.value, reason, release_at


async def apply_policy(
    conn: AsyncConnection,
    dialect: str,
    publish_id: str,
    rows: Sequence[dict[str, Any]],
    pp: PagePolicy,
    now: float,
) -> None:
    """Decide every row not already final (expired, no credentials) in place."""
    open_rows = [r for r in rows if "status" not in r]
    if not open_rows:
        return
    if pp.realtime_first:
        # Decided here, in the transaction that inserts the device's record: once per device,
        # whatever acks arrive later (a late ack is a receipt; the push already went).
        acked = await acked_users(conn, publish_id, {r["user"] for r in open_rows if r.get("user")})
        for r in open_rows:
            if r.get("user") in acked:
                _stop(r, DeliveryStatus.SKIPPED, ACKED, f"user {r['user']!r} acked it on a realtime session")
        open_rows = [r for r in open_rows if "status" not in r]
    if pp.payload_providers is not None:
        for r in open_rows:
            if r["provider"] not in pp.payload_providers:
                _stop(
                    r,
                    DeliveryStatus.SKIPPED,
                    "no_payload_for_provider",
                    f"the publish gave a payload only for {', '.join(sorted(pp.payload_providers))}",
                )
        open_rows = [r for r in open_rows if "status" not in r]
    category = pp.publish.category
    if category is not None and open_rows:
        users = sorted({r["user"] for r in open_rows if r.get("user")})
        out = await opted_out(conn, pp.app_id, category, users, pp.category_default) if users else set()
        for r in open_rows:
            user = r.get("user")
            if (user and user in out) or (not user and not pp.category_default):
                who = f"user {user!r}" if user else "a device without a user"
                _stop(r, DeliveryStatus.SUPPRESSED, "preference", f"{who} is not opted in to {category!r}")
        open_rows = [r for r in open_rows if "status" not in r]
    if not open_rows:
        return
    user_quiet = await _user_quiet(conn, pp, open_rows)
    rules = TimeRules(pp.publish, pp.app, now, pp.expire_at)
    for r in open_rows:
        _apply(r, rules.decide(r.get("timezone"), user_quiet.get(r.get("user") or "")), None)
    open_rows = [r for r in open_rows if r.get("status") in (None, DeliveryStatus.HELD.value)]
    caps = pp.publish.caps_for(pp.app)
    if caps and open_rows and not pp.dry_run:
        await _caps(conn, dialect, publish_id, pp, open_rows, now, user_quiet)


async def _user_quiet(
    conn: AsyncConnection, pp: PagePolicy, rows: list[dict[str, Any]]
) -> dict[str, QuietHours]:
    """The quiet hours of the page's users who set their own (none for a critical publish)."""
    if not pp.user_quiet or pp.publish.critical:
        return {}
    users = sorted({r["user"] for r in rows if r.get("user")})
    found = await user_quiet_hours_of(conn, pp.app_id, users) if users else {}
    return {u: QuietHours.from_dict(body) for u, body in found.items()}


def _apply(r: dict[str, Any], d: Decision, capped_at: float | None) -> None:
    """Write a time decision onto the row. ``capped_at``: the decision was re-made from the time a
    frequency cap delayed the row to (that time is then its release if no other rule moves it)."""
    if d.status == DeliveryStatus.PENDING:
        if capped_at is not None:
            _hold(r, "frequency_cap", capped_at)
        return
    r.pop("release_at", None)
    if d.status == DeliveryStatus.HELD and d.release_at is not None:
        _hold(r, d.reason or "policy", d.release_at)
    elif d.status == DeliveryStatus.EXPIRED:
        why = "a frequency cap delays it" if capped_at is not None else "the delivery window opens"
        _stop(r, DeliveryStatus.EXPIRED, "expired", f"{why} past the notification's expiry")
    elif d.status == DeliveryStatus.SUPPRESSED:
        _stop(r, DeliveryStatus.SUPPRESSED, d.reason or "policy", "inside quiet hours (action drop)")
    else:
        _stop(
            r, DeliveryStatus.SKIPPED, d.reason or "policy", "the device has no time zone (no_timezone: skip)"
        )


async def _caps(
    conn: AsyncConnection,
    dialect: str,
    publish_id: str,
    pp: PagePolicy,
    rows: list[dict[str, Any]],
    now: float,
    user_quiet: dict[str, QuietHours],
) -> None:
    """Frequency caps: one slot per scope (device or user) per publish, taken atomically
    (store/caps.py) in the window of the scope's earliest release (a user's devices in several
    zones count once, where the first of them goes). Within the cap, each device keeps its own
    release; a ``delay`` cap moves the devices that would go before its window to that window's
    start, and their windows and quiet hours are decided again from there."""
    caps = pp.publish.caps_for(pp.app)
    earliest: dict[str, float] = {}
    limits: dict[str, tuple[int, int, str]] = {}
    scopes_of: list[list[str]] = []
    for r in rows:
        at = r.get("release_at") or now
        scopes = []
        for cap in caps:
            scope = cap.scope(r.get("device_id") or r["recipient_id"], r.get("user"))
            scopes.append(scope)
            earliest[scope] = min(at, earliest.get(scope, at))
            limits.setdefault(scope, (cap.limit, cap.window_seconds, cap.action))
        scopes_of.append(scopes)
    wants = [CapRequest(sc, *limits[sc][:2], limits[sc][2], earliest[sc]) for sc in sorted(earliest)]
    got = await take(conn, dialect, pp.app_id, publish_id, wants)
    again: dict[float, TimeRules] = {}
    for r, scopes in zip(rows, scopes_of, strict=True):
        releases = [got.get(sc) for sc in scopes]
        if any(t is None for t in releases):
            r.pop("release_at", None)
            _stop(r, DeliveryStatus.SUPPRESSED, "frequency_cap", "over a frequency cap (action drop)")
            continue
        at = max(t for t in releases if t is not None)
        if at <= (r.get("release_at") or now) + _HOLD_AFTER:
            continue  # inside the cap where its own rules put it
        rules = again.get(at)
        if rules is None:
            rules = again[at] = TimeRules(pp.publish, pp.app, at, pp.expire_at)
        _apply(r, rules.decide(r.get("timezone"), user_quiet.get(r.get("user") or "")), at)


class PolicyLoader:
    """Builds a publish's :class:`PagePolicy` once per plan job (or admission), from snapshots
    kept ``SNAPSHOT_SECONDS`` per process (the app's policy, whether it has user quiet hours):
    a publish without any rule costs no query."""

    def __init__(self, db: Database, store: PolicyStore) -> None:
        self.db = db
        self.store = store
        #: app id → (expiry, policy body it was parsed from, parsed policy, has user quiet hours).
        self._apps: dict[str, tuple[float, dict[str, Any], AppPolicy, bool]] = {}

    async def _app(self, app_id: str) -> tuple[AppPolicy, bool]:
        body, _ = await self.store.cached_policy(app_id)
        found = self._apps.get(app_id)
        if found is not None and found[0] > time.monotonic() and found[1] is body:
            return found[2], found[3]
        async with self.db.read() as conn:
            user_quiet = await has_user_quiet_hours(conn, app_id)
        parsed = AppPolicy.from_dict(body)
        self._apps[app_id] = (time.monotonic() + SNAPSHOT_SECONDS, body, parsed, user_quiet)
        return parsed, user_quiet

    def forget(self, app_id: str) -> None:
        """Drop the app's snapshot (this process changed a user's quiet hours)."""
        self._apps.pop(app_id, None)

    async def for_request(
        self, app_id: str, request: dict[str, Any], expire_at: float | None
    ) -> PagePolicy | None:
        """The publish's policy, or None when no rule can change any of its rows. ``expire_at``:
        its deadline (``expire_at`` or the TTL, whichever ends first): a release after it is
        ``expired``."""
        publish = PublishPolicy.from_request(request.get("policy"))
        app, user_quiet = await self._app(app_id)
        payload = request.get("payload_providers")
        default = True
        if publish.category is not None:
            # A category deleted after admission: its users' explicit choices still count.
            found = await self.store.category_default(app_id, publish.category)
            default = True if found is None else found
        pp = PagePolicy(
            app_id=app_id,
            publish=publish,
            app=app,
            expire_at=expire_at,
            payload_providers=frozenset(payload) if payload is not None else None,
            category_default=default,
            user_quiet=user_quiet,
            dry_run=bool(request.get("dry_run")),
            realtime_first=request.get("realtime") == "first",
        )
        return pp if pp.active else None
