"""Settings: an optional TOML file, ``${VAR}`` interpolation, ``PUSHGATE_*`` environment overrides.

Every key has a default (docs/configuration.md lists them all). Loading fails with a
:class:`ConfigError` whose message names the offending key, so a typo never becomes a silent
default at 3 a.m.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/pushgate.db"
PROVIDER_SECTIONS = ("fcm", "webpush", "apns", "hms", "wns", "mipush")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and how to fix it."""


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8686
    #: Run ``alembic upgrade head`` when ``serve``/``worker`` start.
    auto_migrate: bool = True
    #: Request bodies above this many bytes are answered 413.
    max_body_bytes: int = 1_048_576
    log_level: str = "info"
    #: One log line per request.
    access_log: bool = True


class EngineSettings(msgspec.Struct, forbid_unknown_fields=True):
    #: Worker tasks per process; each claims and runs one job at a time.
    concurrency: int = 4
    #: Devices per dispatch batch (one job).
    batch_size: int = 500
    #: Recipients resolved per planner page.
    plan_page_size: int = 2000
    #: A claimed job whose worker vanished is claimed again after this many seconds.
    lease_seconds: float = 60.0
    #: Idle workers poll the queue this often (they are also woken at once on local enqueue).
    poll_interval: float = 0.5
    #: Provider HTTP timeout, seconds.
    http_timeout: float = 10.0
    #: A PEM file of extra root certificates that provider connections trust besides the system's
    #: (a private CA in front of a provider, or the provider lab's CA).
    ca_file: str | None = None
    #: How often a worker process looks for publishes whose completion check was lost in a crash.
    sweep_interval: float = 15.0


class RetryPolicySettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A provider's override of ``[retry]``: any key left out keeps the ``[retry]`` value."""

    ladder: list[float] | None = None
    jitter: float | None = None
    max_attempts: int | None = None
    max_age_seconds: float | None = None
    quota_min_delay: float | None = None


class RetrySettings(msgspec.Struct, forbid_unknown_fields=True):
    """When a retryable failure is tried again (``[retry]``, ``[retry.<provider>]`` overrides)."""

    #: Seconds before attempt 2, 3, …; the last step repeats. ``Retry-After`` replaces the step.
    ladder: list[float] = msgspec.field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 3600.0])
    #: Each step is multiplied by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = 0.2
    #: Attempts per delivery, the first included; then the delivery is ``failed`` (a dead letter).
    max_attempts: int = 6
    #: No retry is scheduled later than this many seconds after the publish (0: no limit).
    max_age_seconds: float = 86400.0
    #: Shortest wait after a ``quota`` answer. FCM never waits less than 60 s (its own rule),
    #: whatever this or ``[retry.fcm]`` says.
    quota_min_delay: float = 0.0
    fcm: RetryPolicySettings | None = None
    webpush: RetryPolicySettings | None = None
    apns: RetryPolicySettings | None = None
    hms: RetryPolicySettings | None = None
    wns: RetryPolicySettings | None = None
    mipush: RetryPolicySettings | None = None


class QuarantineSettings(msgspec.Struct, forbid_unknown_fields=True):
    """The circuit breaker per (app, provider)."""

    #: Consecutive ``provider_transient`` failures that park the pair (0: never).
    failure_threshold: int = 5
    #: First cooldown, seconds; each failed half-open probe doubles it up to ``max_cooldown``.
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    #: Cooldown after a ``credential`` failure (any one parks the pair); replacing the
    #: credential through the API ends it at once.
    credential_cooldown: float = 60.0
    #: A half-open probe that has not reported back after this long may be taken over.
    probe_timeout: float = 30.0


class RateLimitSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Three layers; each defers work, none drops it. Limits hold per worker process."""

    #: Layer 3: provider requests in flight at once across every app and provider (0: no cap).
    in_flight: int = 2000
    #: Layer 2: pushes per second per app (0: no limit); ``[apps.<name>.rate_limits]`` overrides.
    app_per_second: float = 0.0
    #: Layer 1: pushes per second per (app, provider) token bucket (0: no limit).
    fcm_per_second: float = 0.0
    webpush_per_second: float = 0.0
    apns_per_second: float = 0.0
    hms_per_second: float = 0.0
    wns_per_second: float = 0.0
    mipush_per_second: float = 0.0
    #: Bucket size in seconds of rate: how big a burst may go out before the rate applies.
    burst_seconds: float = 1.0


class AppRateLimits(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``[apps.<name>.rate_limits]``: one app's own layer-1 and layer-2 rates."""

    app_per_second: float | None = None
    fcm_per_second: float | None = None
    webpush_per_second: float | None = None
    apns_per_second: float | None = None
    hms_per_second: float | None = None
    wns_per_second: float | None = None
    mipush_per_second: float | None = None


class HealthSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Invalid-token health: the provider's view of our sender reputation."""

    #: The rolling window, seconds (whole minutes are kept).
    window_seconds: float = 300.0
    #: A pair is unhealthy at or above this share of ``device_terminal`` answers …
    invalid_rate_threshold: float = 0.10
    #: … once the window holds at least this many of them.
    invalid_min_events: int = 20
    #: While unhealthy, the pair sends at most this many pushes per second (0: warn only).
    throttle_per_second: float = 1000.0


class LimitSettings(msgspec.Struct, forbid_unknown_fields=True):
    max_recipients_per_publish: int = 1000
    idempotency_window_hours: float = 24.0
    #: Default page size for list endpoints, and the maximum a client may ask for.
    default_page_size: int = 100
    max_page_size: int = 1000
    #: Backpressure: ``POST /v1/publish`` answers 429 while the queue holds more jobs (0: off).
    max_queue_depth: int = 100_000
    #: … or while the oldest runnable job has waited longer than this many seconds (0: off).
    max_queue_age_seconds: float = 300.0


class DeviceSettings(msgspec.Struct, forbid_unknown_fields=True):
    #: Accept Web Push endpoints on loopback/private hosts or plain http (the provider lab).
    allow_loopback_endpoints: bool = False
    #: Devices not seen (registered or updated) for more than this many days are skipped by
    #: fan-out; 0 turns it off.
    max_inactive_days: float = 0.0
    #: With ``max_inactive_days``: delete such devices (hourly, and once at start).
    prune_inactive: bool = False


class FcmSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """FCM HTTP v1 credentials (``pushgate/providers/fcm.py`` checks them at startup)."""

    #: Path of the service-account JSON (give this or ``service_account_json``).
    service_account_file: str | None = None
    #: The service-account JSON itself, e.g. ``"${FCM_SERVICE_ACCOUNT}"``.
    service_account_json: str | None = None
    #: Default: the JSON's ``base_url`` key (the lab writes one), else https://fcm.googleapis.com.
    base_url: str | None = None
    #: Default: the JSON's ``project_id``.
    project_id: str | None = None
    #: Requests in flight per app.
    concurrency: int = 200
    #: Per-request timeout in seconds (default: ``engine.http_timeout``).
    timeout: float | None = None


class WebPushSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """VAPID credentials for Web Push (``pushgate keys vapid`` generates a pair)."""

    vapid_subject: str | None = None
    vapid_private_key: str | None = None
    vapid_public_key: str | None = None
    concurrency: int = 200
    timeout: float | None = None


class ApnsSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """APNs: token auth (.p8 + key id + team id) or certificate auth (.p12 / PEM)."""

    #: Path of the .p8 signing key, or the PEM text itself in ``key``.
    key_file: str | None = None
    key: str | None = None
    key_id: str | None = None
    team_id: str | None = None
    #: The app's bundle id: the ``apns-topic`` (suffixes for voip etc. are added per push type).
    bundle_id: str | None = None
    #: Certificate auth: a .p12 (with ``certificate_password``) or a PEM certificate + key.
    certificate_file: str | None = None
    certificate_password: str | None = None
    certificate_key_file: str | None = None
    #: Certificate auth inline (credentials uploaded through the API): a base64 .p12, or PEM
    #: text holding the certificate and its unencrypted private key.
    certificate_p12_base64: str | None = None
    certificate_pem: str | None = None
    #: ``production`` or ``sandbox``: which APNs host devices without an ``environment`` use.
    environment: str = "production"
    #: Override the hosts (the provider lab): ``https://…`` or ``http://…`` for h2c.
    base_url: str | None = None
    sandbox_base_url: str | None = None
    #: CA bundle to trust for ``base_url`` (the lab's self-signed certificate).
    ca_file: str | None = None
    #: The same CA bundle as PEM text (for credentials uploaded through the API).
    ca_pem: str | None = None
    concurrency: int = 500
    timeout: float | None = None


class HmsSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Huawei Push Kit: OAuth client credentials."""

    app_id: str | None = None
    client_secret: str | None = None
    base_url: str | None = None
    token_url: str | None = None
    #: Launcher activity (``com.example.MainActivity``) that Push Kit badges need; no badge without it.
    badge_class: str | None = None
    concurrency: int = 50
    timeout: float | None = None


class WnsSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Windows Push Notification Services: package SID + secret (classic or Entra token endpoint)."""

    package_sid: str | None = None
    client_secret: str | None = None
    #: ``classic`` (login.live.com) or ``entra`` (login.microsoftonline.com).
    auth: str = "classic"
    tenant_id: str | None = None
    #: ``entra`` only: the Entra application (client) id; defaults to ``package_sid``.
    client_id: str | None = None
    token_url: str | None = None
    concurrency: int = 200
    timeout: float | None = None


class MiPushSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Xiaomi MiPush: app secret + package name, region host."""

    app_secret: str | None = None
    package_name: str | None = None
    #: ``china``, ``global``, ``europe``, ``russia`` or ``india``.
    region: str = "china"
    base_url: str | None = None
    concurrency: int = 50
    timeout: float | None = None


class AppSection(msgspec.Struct, forbid_unknown_fields=True):
    fcm: FcmSettings | None = None
    webpush: WebPushSettings | None = None
    apns: ApnsSettings | None = None
    hms: HmsSettings | None = None
    wns: WnsSettings | None = None
    mipush: MiPushSettings | None = None
    rate_limits: AppRateLimits | None = None


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    database_url: str = DEFAULT_DATABASE_URL
    #: Key of the ``default`` app created at first start; random (and printed once) when empty.
    default_app_key: str | None = None
    #: Master key that encrypts credentials uploaded through the API (16+ characters). Without it,
    #: ``PUT /v1/credentials/…`` answers 409; credentials in this file keep working.
    secret_key: str | None = None
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    devices: DeviceSettings = msgspec.field(default_factory=DeviceSettings)
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    quarantine: QuarantineSettings = msgspec.field(default_factory=QuarantineSettings)
    rate_limits: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    #: Credentials of the ``default`` app.
    fcm: FcmSettings | None = None
    webpush: WebPushSettings | None = None
    apns: ApnsSettings | None = None
    hms: HmsSettings | None = None
    wns: WnsSettings | None = None
    mipush: MiPushSettings | None = None
    #: Per-app credentials: ``[apps.<app name or id>.fcm]``.
    apps: dict[str, AppSection] = msgspec.field(default_factory=dict)

    def provider_settings(self, app_id: str, app_name: str) -> dict[str, dict[str, Any]]:
        """Credentials sections for one app; the top-level ones belong to the ``default`` app."""
        out: dict[str, dict[str, Any]] = {}
        holders: list[Any] = [self] if app_name == "default" else []
        holders += [self.apps[key] for key in (app_name, app_id) if key in self.apps]
        for holder in holders:
            for name in PROVIDER_SECTIONS:
                section = getattr(holder, name)
                if section is not None:
                    out[name] = msgspec.to_builtins(section)
        return out


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECTIONS = (
    "server",
    "engine",
    "limits",
    "devices",
    "retry",
    "quarantine",
    "rate_limits",
    "health",
    *PROVIDER_SECTIONS,
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
    for name, raw in env.items():
        if not name.startswith("PUSHGATE_") or name in ("PUSHGATE_CONFIG",):
            continue
        rest = name[len("PUSHGATE_") :].lower()
        for section in _SECTIONS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                target = data.setdefault(section, {})
                if not isinstance(target, dict):
                    raise ConfigError(f"{section}: must be a table")
                if section == "retry":
                    # PUSHGATE_RETRY_FCM_MAX_ATTEMPTS → [retry.fcm] max_attempts
                    for provider in PROVIDER_SECTIONS:
                        if key.startswith(provider + "_"):
                            target = target.setdefault(provider, {})
                            key = key[len(provider) + 1 :]
                            break
                # Provider values stay strings (a key or project id must not turn into a number);
                # msgspec's lax conversion still turns "50" into 50 where the field is an int.
                target[key] = raw if section in PROVIDER_SECTIONS else _env_value(raw)
                break
        else:
            if rest in ("database_url", "default_app_key", "secret_key"):
                data[rest] = raw


def _describe(err: msgspec.ValidationError) -> str:
    msg = str(err)
    m = re.search(r"at `\$\.?(.*)`$", msg)
    where = m.group(1) if m else ""
    text = msg[: m.start()].rstrip(" -") if m else msg
    m2 = re.match(r"Object contains unknown field `(.+)`", text)
    if m2:
        key = f"{where}.{m2.group(1)}" if where else m2.group(1)
        return f"{key}: unknown key (see docs/configuration.md for the valid keys)"
    return f"{where or '<top level>'}: {text}"


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
    apps = data.get("apps")
    if isinstance(apps, dict):
        # Checked one by one so an error names the app (msgspec would say "apps[...]").
        for name, section in apps.items():
            try:
                msgspec.convert(section, AppSection, strict=False)
            except msgspec.ValidationError as exc:
                raise ConfigError(f"invalid config: apps.{name}.{_describe(exc)}") from None
    try:
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config: {_describe(exc)}") from None
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if not (0 < s.server.port < 65536):
        raise ConfigError("invalid config: server.port: must be between 1 and 65535")
    if not s.database_url.split(":", 1)[0].startswith(("sqlite", "postgresql", "postgres")):
        raise ConfigError(
            "invalid config: database_url: use sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db"
        )
    for key in ("concurrency", "batch_size", "plan_page_size"):
        if getattr(s.engine, key) < 1:
            raise ConfigError(f"invalid config: engine.{key}: must be at least 1")
    for name in ("", *PROVIDER_SECTIONS):
        policy = getattr(s.retry, name) if name else s.retry
        where = f"retry.{name}" if name else "retry"
        if policy is None:
            continue
        if policy.max_attempts is not None and policy.max_attempts < 1:
            raise ConfigError(f"invalid config: {where}.max_attempts: must be at least 1")
        if policy.ladder is not None and (not policy.ladder or any(x < 0 for x in policy.ladder)):
            raise ConfigError(f"invalid config: {where}.ladder: a non-empty list of seconds >= 0")
        if policy.jitter is not None and not 0 <= policy.jitter < 1:
            raise ConfigError(f"invalid config: {where}.jitter: must be in [0, 1), e.g. 0.2")
        for key in ("max_age_seconds", "quota_min_delay"):
            value = getattr(policy, key)
            if value is not None and value < 0:
                raise ConfigError(f"invalid config: {where}.{key}: must be 0 or more")
    q = s.quarantine
    if q.failure_threshold < 0 or min(q.cooldown, q.max_cooldown, q.credential_cooldown) < 0:
        raise ConfigError("invalid config: quarantine: thresholds and cooldowns must be 0 or more")
    if q.max_cooldown < q.cooldown:
        raise ConfigError("invalid config: quarantine.max_cooldown: must be at least quarantine.cooldown")
    if q.probe_timeout < 1:
        raise ConfigError(
            "invalid config: quarantine.probe_timeout: at least 1 second (longer than a provider request)"
        )
    if s.rate_limits.in_flight < 0 or s.rate_limits.burst_seconds <= 0:
        raise ConfigError(
            "invalid config: rate_limits: in_flight must be 0 (off) or more, burst_seconds above 0"
        )
    if not 0 < s.health.invalid_rate_threshold <= 1:
        raise ConfigError("invalid config: health.invalid_rate_threshold: a share in (0, 1], e.g. 0.1")
    if s.health.window_seconds < 60:
        raise ConfigError("invalid config: health.window_seconds: at least 60 (whole minutes are kept)")
    if s.health.invalid_min_events < 1 or s.health.throttle_per_second < 0:
        raise ConfigError(
            "invalid config: health: invalid_min_events must be at least 1, throttle_per_second 0 or more"
        )
    limit_holders: list[tuple[str, Any]] = [("rate_limits", s.rate_limits)]
    limit_holders += [(f"apps.{n}.rate_limits", a.rate_limits) for n, a in s.apps.items() if a.rate_limits]
    for where, holder in limit_holders:
        for key in ("app_per_second", *(f"{p}_per_second" for p in PROVIDER_SECTIONS)):
            value = getattr(holder, key)
            if value is not None and value < 0:
                raise ConfigError(f"invalid config: {where}.{key}: pushes per second, 0 (no limit) or more")
    for key in ("max_queue_depth", "max_queue_age_seconds"):
        if getattr(s.limits, key) < 0:
            raise ConfigError(f"invalid config: limits.{key}: must be 0 (off) or more")
    if s.devices.max_inactive_days < 0:
        raise ConfigError("invalid config: devices.max_inactive_days: must be 0 (off) or more")
    if s.limits.max_recipients_per_publish < 1:
        raise ConfigError("invalid config: limits.max_recipients_per_publish: must be at least 1")
    if s.secret_key is not None and len(s.secret_key) < 16:
        raise ConfigError(
            "invalid config: secret_key: must be at least 16 characters (openssl rand -base64 32)"
        )
    if s.server.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("invalid config: server.log_level: one of debug, info, warning, error")


def _mask(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, str) and value and any(w in key.lower() for w in _SECRET_WORDS):
        if key.endswith("_file"):
            return value
        return "****" + (value[-4:] if len(value) > 16 else "")
    if isinstance(value, str) and key == "database_url":
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:****@", value)
    return value


def masked(settings: Settings) -> dict[str, Any]:
    """The effective config as a dict with every secret masked (``pushgate config show``)."""
    raw = msgspec.to_builtins(settings)
    return {k: _mask(v, k) for k, v in raw.items()}
