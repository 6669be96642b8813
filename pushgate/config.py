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
    #: Attempts per delivery before it is ``failed`` (first attempt included).
    max_attempts: int = 5
    #: Exponential backoff: base * 2**(attempt-1) seconds, +-20% jitter, capped at backoff_max.
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    #: Minimum wait after an FCM quota error (providers.md: at least 60 s).
    fcm_quota_min_delay: float = 60.0
    #: Provider HTTP timeout, seconds.
    http_timeout: float = 10.0
    #: How often a worker process looks for publishes whose completion check was lost in a crash.
    sweep_interval: float = 15.0


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
_SECTIONS = ("server", "engine", "limits", "devices", *PROVIDER_SECTIONS)
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
    for key in ("concurrency", "batch_size", "plan_page_size", "max_attempts"):
        if getattr(s.engine, key) < 1:
            raise ConfigError(f"invalid config: engine.{key}: must be at least 1")
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
