"""Settings: an optional TOML file, ``${VAR}`` interpolation, ``PUSHGATE_*`` environment overrides.

Long because: every section's Struct is here with each field's comment, so one file answers
"what does this key do" (the loading code after them is short).

Every key has a default (docs/configuration.md lists them all). Loading fails with a
:class:`ConfigError` whose message names the offending key, so a typo never becomes a silent
default at 3 a.m.
Long because: it is the one schema of every section, in the order docs/configuration.md lists them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from pushgate.domain.client_scopes import looks_like_jwt
from pushgate.domain.registry import valid_timezone
from pushgate.providers import registry
from pushgate.providers.base import ProviderSettings
from pushgate.providers.outbound import HostPattern, OutboundSettings
from pushgate.providers.settings import convert_error

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/pushgate.db"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and how to fix it."""


NonNegative = Annotated[float, msgspec.Meta(ge=0)]
"""Seconds, a rate or a count where 0 means "off" or "no limit"."""
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8686
    #: Run ``alembic upgrade head`` when ``serve``/``worker`` start.
    auto_migrate: bool = True
    #: Request bodies above this many bytes are answered 413.
    max_body_bytes: int = 1_048_576
    #: ``debug``, ``info``, ``warning`` or ``error`` (any case).
    log_level: Annotated[str, msgspec.Meta(pattern=r"(?i)^(debug|info|warning|error)$(?!\n)")] = "info"
    #: One log line per request.
    access_log: bool = True
    #: A request's line and headers must arrive within this many seconds of its first byte (and a
    #: new connection must send them within it): slow or silent clients are cut off.
    header_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: A request's whole body must arrive within this many seconds; then 408 and the connection
    #: is closed.
    body_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: An idle keep-alive connection is closed after this many seconds.
    keep_alive_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    #: Request line plus headers above this many bytes are answered 431.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 16_384
    #: Open client connections at most (0: derived from the file-descriptor limit, keeping a
    #: reserve for the database and provider connections). At the cap the longest-idle
    #: connection is closed to make room, or the new one is refused with 503 when none is idle.
    max_connections: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Addresses or networks of reverse proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto``
    #: are believed (e.g. ``["10.0.0.5", "192.168.0.0/24"]``). Empty: nobody's, and the client
    #: address (which the wrong-key throttle counts against) is the connection's peer.
    trusted_proxies: list[str] = msgspec.field(default_factory=list)


class AuthSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``[auth]``: how hard guessing keys is, and how much one key may ask (per process)."""

    #: Requests per second one key may make (a token bucket of one second's worth; 0: no limit).
    key_requests_per_second: NonNegative = 0.0
    #: A client address that presents this many wrong keys within ``failure_window_seconds`` …
    max_failures: Annotated[int, msgspec.Meta(ge=0)] = 20
    failure_window_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    #: … is answered 429 for this many seconds, whatever key it sends (0 for ``max_failures``: off).
    block_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0


class EngineSettings(msgspec.Struct, forbid_unknown_fields=True):
    #: Worker tasks per process; each claims and runs one job at a time.
    concurrency: AtLeastOne = 4
    #: Devices per dispatch batch (one job).
    batch_size: AtLeastOne = 500
    #: Recipients resolved per planner page.
    plan_page_size: AtLeastOne = 2000
    #: A publish of at most this many device, user, channel or token recipients that resolve to at most
    #: this many devices is planned inside admission's transaction (no plan job); 0: never.
    plan_at_admission: Annotated[int, msgspec.Meta(ge=0, le=500)] = 20
    #: A claimed small dispatch job (at most 20 targets) takes up to this many more of its app
    #: and provider, sent together and recorded in one transaction; 1: each alone.
    dispatch_group: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 64
    #: A job whose worker vanished is claimed again after this (a running job's is renewed).
    lease_seconds: Annotated[float, msgspec.Meta(ge=1)] = 15.0
    #: Idle workers poll the queue this often (they are also woken at once on local enqueue).
    poll_interval: float = 0.5
    #: Provider HTTP timeout, seconds.
    http_timeout: float = 10.0
    #: A PEM file of extra root certificates that provider connections trust besides the system's
    #: (a private CA in front of a provider, or the provider lab's CA).
    ca_file: str | None = None
    #: Reading a provider's answer stops past this many bytes (``response_too_large``).
    max_response_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 65_536
    #: How often a worker process looks for publishes whose completion check was lost in a crash.
    sweep_interval: float = 15.0


#: Seconds before attempt 2, 3, …: a non-empty list of seconds >= 0.
Ladder = Annotated[list[NonNegative], msgspec.Meta(min_length=1)]
Jitter = Annotated[float, msgspec.Meta(ge=0, lt=1)]


class RetryPolicySettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A provider's override of ``[retry]``: any key left out keeps the ``[retry]`` value."""

    ladder: Ladder | None = None
    jitter: Jitter | None = None
    max_attempts: AtLeastOne | None = None
    max_age_seconds: NonNegative | None = None
    quota_min_delay: NonNegative | None = None


class RetrySettings(msgspec.Struct, forbid_unknown_fields=True):
    """When a retryable failure is tried again (``[retry]``, ``[retry.<provider>]`` overrides)."""

    #: Seconds before attempt 2, 3, …; the last step repeats. ``Retry-After`` replaces the step.
    ladder: Ladder = msgspec.field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 3600.0])
    #: Each step is multiplied by a random factor in [1 - jitter, 1 + jitter].
    jitter: Jitter = 0.2
    #: Attempts per delivery, the first included; then the delivery is ``failed`` (a dead letter).
    max_attempts: AtLeastOne = 6
    #: No retry is scheduled later than this many seconds after the publish (0: no limit).
    max_age_seconds: NonNegative = 86400.0
    #: Shortest wait after a ``quota`` answer. FCM never waits less than 60 s (its own rule),
    #: whatever this or ``[retry.fcm]`` says.
    quota_min_delay: NonNegative = 0.0
    #: ``[retry.<provider>]``, keyed by provider name.
    by_provider: dict[str, RetryPolicySettings] = msgspec.field(default_factory=dict)


class QuarantineSettings(msgspec.Struct, forbid_unknown_fields=True):
    """The circuit breaker per (app, provider)."""

    #: Consecutive ``provider_transient`` failures that park the pair (0: never).
    failure_threshold: Annotated[int, msgspec.Meta(ge=0)] = 5
    #: First cooldown, seconds; each failed half-open probe doubles it up to ``max_cooldown``.
    cooldown: NonNegative = 30.0
    #: At least ``cooldown``.
    max_cooldown: NonNegative = 600.0
    #: Cooldown after a ``credential`` failure (any one parks the pair); replacing the
    #: credential through the API ends it at once.
    credential_cooldown: NonNegative = 60.0
    #: A half-open probe that has not reported back after this long may be taken over (at
    #: least 1 second: longer than a provider request).
    probe_timeout: Annotated[float, msgspec.Meta(ge=1)] = 30.0


class RateLimitSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Three layers; each defers work, none drops it. Limits hold per worker process."""

    #: Layer 3: provider requests in flight at once across every app and provider (0: no cap).
    in_flight: Annotated[int, msgspec.Meta(ge=0)] = 2000
    #: Layer 2: pushes per second per app (0: no limit); ``[apps.<name>.rate_limits]`` overrides.
    app_per_second: NonNegative = 0.0
    #: Layer 1: pushes per second per (app, provider) token bucket (0: no limit), written in
    #: TOML as ``<provider>_per_second``; keyed here by provider name.
    by_provider: dict[str, NonNegative] = msgspec.field(default_factory=dict)
    #: Bucket size in seconds of rate: how big a burst may go out before the rate applies.
    burst_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0

    def provider_rate(self, provider: str) -> float:
        return self.by_provider.get(provider, 0.0)


class AppRateLimits(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``[apps.<name>.rate_limits]``: one app's own layer-1 and layer-2 rates."""

    app_per_second: NonNegative | None = None
    #: ``<provider>_per_second`` in TOML.
    by_provider: dict[str, NonNegative] = msgspec.field(default_factory=dict)


class AppQueueLimits(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``[apps.<name>.limits]``: one app's own backpressure thresholds (``[limits]`` otherwise)."""

    max_queue_depth: Annotated[int, msgspec.Meta(ge=0)] | None = None
    max_queue_age_seconds: NonNegative | None = None


class HealthSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Invalid-token health: the provider's view of our sender reputation."""

    #: The rolling window, seconds (whole minutes are kept, so at least 60).
    window_seconds: Annotated[float, msgspec.Meta(ge=60)] = 300.0
    #: A pair is unhealthy at or above this share of ``device_terminal`` answers …
    invalid_rate_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.10
    #: … once the window holds at least this many of them.
    invalid_min_events: AtLeastOne = 20
    #: While unhealthy, the pair sends at most this many pushes per second (0: warn only).
    throttle_per_second: NonNegative = 1000.0


class LimitSettings(msgspec.Struct, forbid_unknown_fields=True):
    max_recipients_per_publish: AtLeastOne = 1000
    idempotency_window_hours: float = 24.0
    #: Default page size for list endpoints, and the maximum a client may ask for.
    default_page_size: int = 100
    max_page_size: int = 1000
    #: Backpressure per app: ``POST /v1/publish`` answers an app 429 while it has more jobs (0: off)
    max_queue_depth: Annotated[int, msgspec.Meta(ge=0)] = 100_000
    #: … or while its oldest runnable job has waited longer than this many seconds (0: off).
    max_queue_age_seconds: NonNegative = 300.0
    #: Channels one device may be in (its own and its user's bound ones), and channels one user
    #: may be bound to; every route that adds channels answers 400 past it.
    max_channels_per_device: AtLeastOne = 1000
    #: Rows (devices, channel memberships, tags, user bindings) one request may write or delete,
    #: so no request holds the database for long (0: no limit).
    max_rows_per_request: Annotated[int, msgspec.Meta(ge=0)] = 50_000


class DeviceSettings(msgspec.Struct, forbid_unknown_fields=True):
    #: The provider lab: plain http and loopback addresses, for device endpoints and provider
    #: URLs alike (other non-public networks: ``outbound.allow_networks``).
    allow_loopback_endpoints: bool = False
    #: Devices not seen (registered or updated) for more than this many days are skipped by
    #: fan-out; 0 turns it off.
    max_inactive_days: NonNegative = 0.0
    #: With ``max_inactive_days``: delete such devices (hourly, and once at start).
    prune_inactive: bool = False


class RetentionSettings(msgspec.Struct, forbid_unknown_fields=True):
    """How long finished publishes are kept, and how the background sweep deletes them."""

    #: Days a finished publish (its delivery records, counters, dead letters and leftover jobs)
    #: is kept after it closed; fractions are allowed (0.5 is 12 hours), 0 keeps everything.
    days: NonNegative = 7.0
    #: Seconds between two sweeps of each worker process (the first runs at start).
    interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    #: Rows deleted per transaction: at most this many publishes and this many delivery records.
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500


class AppRetention(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``[apps.<name>.retention]``: one app's own ``days`` (unset: ``[retention] days``)."""

    days: NonNegative | None = None


#: ``HH:MM`` or ``HH:MM:SS``: the pattern of ``api/schemas_policy.py:TimeOfDay`` (config sits
#: below the API, so it cannot import it).
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$(?!\n)")]
PolicyCategoryId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$(?!\n)")
]


def _zone(name: str | None, key: str) -> None:
    if name is not None and not valid_timezone(name):
        raise ValueError(f"{key}: {name!r} is not an IANA time zone (e.g. Europe/Paris)")


def _seconds(time_of_day: str) -> int:
    hours, minutes, *rest = time_of_day.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + (int(rest[0]) if rest else 0)


class QuietHoursSettings(msgspec.Struct, forbid_unknown_fields=True):
    """A daily window (``start`` after ``end`` crosses midnight) in which notifications wait
    (``defer``, to its end) or are dropped (``drop``: outcome ``suppressed``, ``quiet_hours``)."""

    start: ClockTime
    end: ClockTime
    #: An IANA zone; unset: each device's own zone.
    timezone: str | None = None
    action: Literal["defer", "drop"] = "defer"

    def __post_init__(self) -> None:
        _zone(self.timezone, "timezone")
        if _seconds(self.start) == _seconds(self.end):
            raise ValueError("start and end must differ (the window would be empty)")


class FrequencyCapSettings(msgspec.Struct, forbid_unknown_fields=True):
    """At most ``limit`` notifications per ``window_seconds`` per user or device."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    window_seconds: Annotated[int, msgspec.Meta(ge=1, le=366 * 86400)]
    per: Literal["user", "device"] = "user"
    #: Count only this category's notifications (unset: every notification).
    category: PolicyCategoryId | None = None
    action: Literal["drop", "delay"] = "drop"


class CategorySettings(msgspec.Struct, forbid_unknown_fields=True):
    """A notification category a publish may name and users opt in or out of."""

    id: PolicyCategoryId
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    #: A user who never chose receives the category when true.
    default_opt_in: bool = True


class PolicySettings(msgspec.Struct, forbid_unknown_fields=True):
    """``[policy]``: every app's policy unless its ``[apps.<name>.policy]`` or ``PUT /v1/policy``
    says otherwise (docs/policy.md)."""

    #: The zone of devices that have none, for delivery windows and quiet hours.
    default_timezone: str = "UTC"
    quiet_hours: QuietHoursSettings | None = None
    frequency_caps: list[FrequencyCapSettings] = msgspec.field(default_factory=list)
    categories: list[CategorySettings] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _zone(self.default_timezone, "default_timezone")


class AppPolicySettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``[apps.<name>.policy]``: each key given replaces ``[policy]``'s; ``categories`` are
    added to ``[policy]``'s (the app's wins for the same id)."""

    default_timezone: str | None = None
    quiet_hours: QuietHoursSettings | None = None
    #: ``[]`` turns ``[policy]``'s caps off for this app.
    frequency_caps: list[FrequencyCapSettings] | None = None
    categories: list[CategorySettings] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _zone(self.default_timezone, "default_timezone")


class RealtimeSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``[realtime]``: the socket.io gateway at ``/socket.io/`` (docs/realtime.md)."""

    #: Serve socket.io on the API's port.
    enabled: bool = True
    #: Browser origins allowed to connect (``["*"]``: any; ``[]``: the same origin only, which
    #: ``realtime/gateway.py`` passes to engine.io as ``None``: engine.io reads ``[]`` as no check
    #: at all). Credentials (cookies) are never allowed: the token is in the handshake.
    cors_allowed_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    #: socket.io's heartbeat: a session silent for this long plus ``ping_timeout_seconds`` is
    #: closed (and a long-polling request is answered at least this often).
    ping_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 25.0
    ping_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    #: The longest ``ttl_seconds`` ``POST /v1/realtime/tokens`` grants.
    max_token_ttl_seconds: Annotated[int, msgspec.Meta(ge=60)] = 86_400
    #: Signs the default app's connection tokens instead of its stored random secret (32+
    #: characters; ``[apps.<name>.realtime] token_secret`` for another app).
    token_secret: Annotated[str, msgspec.Meta(min_length=32)] | None = None
    #: A publish's ``realtime`` when it says none: ``off`` (push only), ``also``, ``first`` or
    #: ``only`` (docs/realtime.md, "Realtime as a delivery path").
    default_mode: Literal["off", "also", "first", "only"] = "off"
    #: ``first``: how long the sessions have to ack before the user's devices get the push.
    ack_timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0


#: A front-end's path prefix: empty (the system's own paths) or ``/segment[/segment…]``.
CompatPrefix = Annotated[str, msgspec.Meta(pattern=r"^(/[A-Za-z0-9._~-]+)*$", max_length=100)]


class CompatFrontEnd(msgspec.Struct, forbid_unknown_fields=True):
    """``[compat.<system>]``: one foreign API served by ``pushgate serve`` (docs/compat.md)."""

    enabled: bool = True
    #: Served under this prefix instead of the system's own paths (e.g. ``/centrifugo``).
    prefix: CompatPrefix = ""


class GorushCompat(CompatFrontEnd, forbid_unknown_fields=True):
    """``[compat.gorush]``: gorush has no keys of its own, so the front-end serves one app."""

    #: The app (name or id) whose devices and credentials gorush's requests use.
    app: str = "default"
    #: Require that app's key as ``Authorization: Bearer``; ``false`` is for private networks only.
    require_key: bool = True
    #: gorush's ``core.sync``: every ``POST /api/push`` waits for its sends and answers their logs.
    sync: bool = False
    #: gorush's ``core.max_notification``: the most notifications one ``POST /api/push`` takes.
    max_notification: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class CompatSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``[compat]``: the seed systems' APIs, each a thin translation onto the native engine."""

    centrifugo: CompatFrontEnd = msgspec.field(default_factory=CompatFrontEnd)
    sockudo: CompatFrontEnd = msgspec.field(default_factory=CompatFrontEnd)
    sentori: CompatFrontEnd = msgspec.field(default_factory=CompatFrontEnd)
    notification_socketio: CompatFrontEnd = msgspec.field(default_factory=CompatFrontEnd)
    gorush: GorushCompat = msgspec.field(default_factory=GorushCompat)


class WebhookSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``[webhooks]``: how events are posted to apps' endpoints (docs/webhooks.md)."""

    #: Seconds before each retry of a failed post; the last step repeats.
    retry_ladder: Annotated[list[Annotated[float, msgspec.Meta(ge=0)]], msgspec.Meta(min_length=1)] = (
        msgspec.field(default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0])
    )
    #: Failed posts in a row after which an endpoint is disabled (its events wait for it).
    max_failures: Annotated[int, msgspec.Meta(ge=1)] = 50
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: Posts in flight per worker process.
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 10
    #: How often each worker process looks for due events and newly closed publishes.
    poll_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    #: ``publish.finished`` is written for publishes closed at least this long ago (their
    #: closing transaction has committed by then, so none is skipped).
    settle_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0


class AppRealtime(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    token_secret: Annotated[str, msgspec.Meta(min_length=32)] | None = None


class AppSection(msgspec.Struct, forbid_unknown_fields=True):
    """``[apps.<name>]``: one app's credentials (``[apps.<name>.<provider>]``), rates, limits, retention."""

    #: Provider name → that provider's settings Struct (``ProviderSpec.settings``); written in
    #: TOML as ``[apps.<name>.<provider>]``.
    providers: dict[str, Any] = msgspec.field(default_factory=dict)
    rate_limits: AppRateLimits | None = None
    #: Hosts this app's uploaded credentials may name besides ``outbound.upload_hosts``.
    upload_hosts: list[HostPattern] = msgspec.field(default_factory=list)
    retention: AppRetention | None = None
    limits: AppQueueLimits | None = None
    policy: AppPolicySettings | None = None
    realtime: AppRealtime | None = None
    #: ``pushgate: {"p", "d"}`` in every payload (docs/receipts.md); false leaves them out.
    message_ids: bool = True


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    database_url: str = DEFAULT_DATABASE_URL
    #: Key of the ``default`` app created at first start; random (and printed once) when empty.
    default_app_key: Annotated[str, msgspec.Meta(min_length=24)] | None = None
    #: Master key that encrypts credentials uploaded through the API (16+ characters). Without it,
    #: ``PUT /v1/credentials/…`` answers 409; credentials in this file keep working.
    secret_key: Annotated[str, msgspec.Meta(min_length=16)] | None = None
    #: Redis (``redis://host:6379/0``) shared by every node: realtime messages and presence
    #: across ``serve`` processes. Unset: one process serves realtime alone.
    redis_url: Annotated[str, msgspec.Meta(pattern=r"^(redis|rediss|unix)://")] | None = None
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    devices: DeviceSettings = msgspec.field(default_factory=DeviceSettings)
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    quarantine: QuarantineSettings = msgspec.field(default_factory=QuarantineSettings)
    rate_limits: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    outbound: OutboundSettings = msgspec.field(default_factory=OutboundSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    policy: PolicySettings = msgspec.field(default_factory=PolicySettings)
    realtime: RealtimeSettings = msgspec.field(default_factory=RealtimeSettings)
    webhooks: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    compat: CompatSettings = msgspec.field(default_factory=CompatSettings)
    #: Credentials of the ``default`` app: provider name → its settings Struct, written in
    #: TOML as top-level ``[fcm]``, ``[apns]``, …
    providers: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Per-app credentials: ``[apps.<app name or id>.fcm]``.
    apps: dict[str, AppSection] = msgspec.field(default_factory=dict)

    def provider_sections(self, app_id: str, app_name: str) -> dict[str, ProviderSettings]:
        """Typed credentials sections for one app; the top-level ones belong to ``default``
        (an ``[apps.<name>.<provider>]`` section replaces the top-level one)."""
        out: dict[str, ProviderSettings] = {}
        holders = [self.providers] if app_name == "default" else []
        holders += [self.apps[key].providers for key in (app_name, app_id) if key in self.apps]
        for holder in holders:
            out.update(holder)
        return out

    def retention_days(self, app_id: str, app_name: str) -> float:
        """The app's ``[apps.<name or id>.retention] days`` (by id first), else ``[retention] days``."""
        for key in (app_id, app_name):
            own = self.apps[key].retention if key in self.apps else None
            if own is not None and own.days is not None:
                return own.days
        return self.retention.days

    def policy_config(self, app_id: str, app_name: str) -> dict[str, Any]:
        """The app's configured policy in the JSON shape of ``PUT /v1/policy`` plus its
        ``categories`` (a list of ``{id, description, default_opt_in}``): ``[policy]`` with the
        keys ``[apps.<name or id>.policy]`` gives (by id first) replacing it."""
        base = self.policy
        own = next((s.policy for k in (app_id, app_name) if (s := self.apps.get(k)) and s.policy), None)
        own = own or AppPolicySettings()
        categories = {c.id: c for c in base.categories} | {c.id: c for c in own.categories}
        quiet = own.quiet_hours or base.quiet_hours
        caps = base.frequency_caps if own.frequency_caps is None else own.frequency_caps
        return {
            "default_timezone": own.default_timezone or base.default_timezone,
            "quiet_hours": None if quiet is None else msgspec.to_builtins(quiet),
            "frequency_caps": [msgspec.to_builtins(c) for c in caps],
            "categories": [msgspec.to_builtins(c) for c in categories.values()],
        }

    def realtime_secret(self, app_id: str, app_name: str) -> str | None:
        """The configured connection-token secret of the app (None: its stored random one)."""
        for key in (app_id, app_name):
            own = self.apps[key].realtime if key in self.apps else None
            if own is not None and own.token_secret:
                return own.token_secret
        return self.realtime.token_secret if app_name == "default" else None

    def message_ids(self, app_id: str, app_name: str) -> bool:
        """Whether the app's payloads carry message ids: ``[apps.<id or name>] message_ids``."""
        return all(self.apps[key].message_ids for key in (app_id, app_name) if key in self.apps)

    def provider_settings(self, app_id: str, app_name: str) -> dict[str, dict[str, Any]]:
        """:meth:`provider_sections` as plain mappings (for display)."""
        return {k: msgspec.to_builtins(v) for k, v in self.provider_sections(app_id, app_name).items()}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECTIONS = tuple(
    "server auth engine limits devices retry quarantine rate_limits health outbound retention policy "
    "realtime webhooks compat".split()
)
_SECRET_WORDS = ("key", "secret", "password", "private", "token", "json", "credential", "pem", "p12")


def _interpolate(value: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{path}: environment variable ${{{name}}} is not set (set it or use ${{{name}:-default}})"
            )

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else k, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _env_value(raw: str) -> Any:
    """Environment values arrive as strings; TOML literals let booleans and numbers through."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    providers = registry.names()
    for name, raw in env.items():
        if not name.startswith("PUSHGATE_") or name in ("PUSHGATE_CONFIG",):
            continue
        rest = name[len("PUSHGATE_") :].lower()
        for section in (*_SECTIONS, *providers):
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                target = data.setdefault(section, {})
                if not isinstance(target, dict):
                    raise ConfigError(f"{section}: must be a table")
                # PUSHGATE_RETRY_FCM_MAX_ATTEMPTS → [retry.fcm] max_attempts,
                # PUSHGATE_COMPAT_GORUSH_REQUIRE_KEY → [compat.gorush] require_key
                subsections = {"retry": providers, "compat": CompatSettings.__struct_fields__}
                for sub in subsections.get(section, ()):
                    if key.startswith(sub + "_"):
                        target = target.setdefault(sub, {})
                        key = key[len(sub) + 1 :]
                        break
                # Provider values stay strings (a key or project id must not turn into a number);
                # msgspec's lax conversion still turns "50" into 50 where the field is an int.
                target[key] = raw if section in providers else _env_value(raw)
                break
        else:
            if rest in ("database_url", "redis_url", "default_app_key", "secret_key"):
                data[rest] = raw


#: What to write instead, for keys whose declared bound alone does not say why (by last key).
_HINTS = {
    "port": "between 1 and 65535",
    "log_level": "one of debug, info, warning, error",
    "secret_key": "at least 16 characters (openssl rand -base64 32)",
    "default_app_key": "at least 24 characters (openssl rand -base64 24), or unset for a generated key",
    "ladder": "a non-empty list of seconds >= 0",
    "jitter": "in [0, 1), e.g. 0.2",
    "probe_timeout": "at least 1 second (longer than a provider request)",
    "window_seconds": "at least 60 (whole minutes are kept)",
    "invalid_rate_threshold": "a share in (0, 1], e.g. 0.1",
}


def _convert(value: Any, kind: Any, where: str) -> Any:
    """``value`` as ``kind``; an error names the key under ``where`` (msgspec itself would
    print a mapping's keys as ``[...]``, hiding the app or provider name)."""
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as exc:
        inner, text = convert_error(exc)
        key = ".".join(p for p in (where, inner) if p) or "<top level>"
        if text == "unknown key":
            text += " (see docs/configuration.md for the valid keys)"
        elif (hint := _HINTS.get(re.sub(r"\[\d+\]$", "", key.rsplit(".", 1)[-1]))) is not None:
            text += f"; {hint}"
        raise ConfigError(f"invalid config: {key}: {text}") from None


def _internal(table: dict[str, Any], key: str, where: str) -> None:
    """The maps below are filled from flat keys; a table must not name them itself."""
    if key in table:
        raise ConfigError(f"invalid config: {where}{key}: unknown key (see docs/configuration.md)")


def _sections(table: dict[str, Any], where: str) -> dict[str, Any]:
    """Take the provider sections (``[fcm]``, ``[apps.<name>.apns]``) out of ``table``, each
    converted to its provider's settings Struct (the registry says which names exist)."""
    _internal(table, "providers", where)
    return {
        spec.name: _convert(table.pop(spec.name), spec.settings, f"{where}{spec.name}")
        for spec in registry.specs()
        if spec.name in table
    }


def _rates(table: Any, where: str) -> None:
    """``<provider>_per_second`` keys → ``by_provider``."""
    if not isinstance(table, dict):
        return
    _internal(table, "by_provider", where)
    keys = [(f"{name}_per_second", name) for name in registry.names()]
    table["by_provider"] = {name: table.pop(key) for key, name in keys if key in table}
    for key, name in keys:
        if name in table["by_provider"]:
            _convert(table["by_provider"][name], NonNegative, f"{where}{key}")


def _lift(data: dict[str, Any]) -> None:
    """Move every per-provider key of the file into the maps the Structs hold, so the file keeps
    the keys users write (``[fcm]``, ``[retry.apns]``, ``wns_per_second``) while the Structs
    have one map per concern instead of a field per provider."""
    data["providers"] = _sections(data, "")
    retry = data.get("retry")
    if isinstance(retry, dict):
        _internal(retry, "by_provider", "retry.")
        retry["by_provider"] = {
            name: _convert(retry.pop(name), RetryPolicySettings, f"retry.{name}")
            for name in registry.names()
            if name in retry
        }
    _rates(data.get("rate_limits"), "rate_limits.")
    apps = data.get("apps")
    for app, section in apps.items() if isinstance(apps, dict) else ():
        if isinstance(section, dict):
            section["providers"] = _sections(section, f"apps.{app}.")
            _rates(section.get("rate_limits"), f"apps.{app}.rate_limits.")


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the file (``path`` or ``$PUSHGATE_CONFIG``), interpolate, apply env overrides, validate."""
    env = os.environ if env is None else env
    path = path or env.get("PUSHGATE_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        data = _interpolate(data, "", env)
    _apply_env(data, env)
    _lift(data)
    apps = data.get("apps")
    if isinstance(apps, dict):
        # One by one so an error names the app (msgspec would say "apps[...]").
        for name, section in apps.items():
            _convert(section, AppSection, f"apps.{name}")
    settings: Settings = _convert(data, Settings, "")
    for key, broken, fix in _RULES:
        if broken(settings):
            raise ConfigError(f"invalid config: {key}: {fix}")
    return settings


#: What a field's type cannot say: ``(key, is it broken?, how to fix it)``. Bounds of single
#: values are declared on the fields (``msgspec.Meta``) instead.
_RULES: tuple[tuple[str, Callable[[Settings], bool], str], ...] = (
    (
        "database_url",
        lambda s: not s.database_url.split(":", 1)[0].startswith(("sqlite", "postgresql", "postgres")),
        "use sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db",
    ),
    (
        "quarantine.max_cooldown",
        lambda s: s.quarantine.max_cooldown < s.quarantine.cooldown,
        "must be at least quarantine.cooldown",
    ),
    (
        "default_app_key",
        # A bearer credential shaped like a JWT is read as a client/device token (docs/clients.md).
        lambda s: s.default_app_key is not None and looks_like_jwt(s.default_app_key),
        "must not look like a JWT (eyJ….….…): choose another key, e.g. openssl rand -base64 24",
    ),
)


def _mask(value: Any, key: str) -> Any:
    secret = any(w in key.lower() for w in _SECRET_WORDS)
    if isinstance(value, dict):
        # A secret written as a table (a service account inline in TOML) is secret as a whole.
        return "****" if secret and value else {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, str) and value and secret:
        if key.endswith("_file"):
            return value
        return "****" + (value[-4:] if len(value) > 16 else "")
    if isinstance(value, str) and key in ("database_url", "redis_url"):
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:****@", value)
    return value


def _unmap(table: dict[str, Any], key: str = "{}") -> dict[str, Any]:
    """``by_provider`` back to the keys users write (``fcm`` or ``fcm_per_second``)."""
    out = {k: v for k, v in table.items() if k != "by_provider"}
    out.update({key.format(name): value for name, value in table.get("by_provider", {}).items()})
    return out


def _with_sections(table: dict[str, Any], *, every_rate: bool = False) -> dict[str, Any]:
    """``every_rate``: the global table lists every provider's rate, 0 included (apps: overrides)."""
    out = {k: v for k, v in table.items() if k != "providers"} | table.get("providers", {})
    if (rates := out.get("rate_limits")) is not None:
        zero = dict.fromkeys(registry.names(), 0.0) if every_rate else {}
        out["rate_limits"] = _unmap(
            {**rates, "by_provider": zero | rates.get("by_provider", {})}, "{}_per_second"
        )
    return out


def _flatten(raw: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_lift`: the maps back under the keys users write."""
    out = _with_sections(raw, every_rate=True)
    out["retry"] = _unmap(out["retry"])
    out["apps"] = {name: _with_sections(app) for name, app in out["apps"].items()}
    return out


def masked(settings: Settings) -> dict[str, Any]:
    """The effective config as a dict with every secret masked (``pushgate config show``), in
    the shape of the file (``[fcm]``, ``[retry.apns]``, ``apns_per_second``)."""
    raw = _flatten(msgspec.to_builtins(settings))
    return {k: _mask(v, k) for k, v in raw.items()}
