"""Settings: defaults, TOML file, ${VAR} interpolation, PUSHGATE_* overrides, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.config import DEFAULT_DATABASE_URL, ConfigError, load_settings, masked


def test_defaults_without_file() -> None:
    s = load_settings(None, env={})
    assert s.database_url == DEFAULT_DATABASE_URL
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8686)
    assert s.limits.max_recipients_per_publish == 1000
    assert s.devices.allow_loopback_endpoints is False
    assert "fcm" not in s.providers and "webpush" not in s.providers


def test_file_interpolation_and_env_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        'database_url = "sqlite:///${DATA_DIR}/p.db"\n'
        "[server]\nport = 9001\n"
        '[webpush]\nvapid_private_key = "${WEB_PUSH_PRIVATE_KEY}"\n'
        'vapid_subject = "${SUBJ:-mailto:a@example.com}"\n'
        '[apps.shop.fcm]\nservice_account_file = "/etc/shop.json"\n'
    )
    env = {
        "DATA_DIR": "/srv",
        "WEB_PUSH_PRIVATE_KEY": "secret-private-key-value",
        "PUSHGATE_RETRY_MAX_ATTEMPTS": "7",
        "PUSHGATE_DEVICES_ALLOW_LOOPBACK_ENDPOINTS": "true",
        "PUSHGATE_SERVER_HOST": "0.0.0.0",
    }
    s = load_settings(cfg, env=env)
    assert s.database_url == "sqlite:////srv/p.db"
    assert s.server.port == 9001 and s.server.host == "0.0.0.0"
    assert s.retry.max_attempts == 7
    assert s.devices.allow_loopback_endpoints is True
    webpush = {"vapid_private_key": "secret-private-key-value", "vapid_subject": "mailto:a@example.com"}
    assert s.provider_settings("app_1", "default") == {"webpush": webpush}
    assert s.provider_settings("app_2", "shop") == {"fcm": {"service_account_file": "/etc/shop.json"}}
    assert s.provider_settings("app_3", "other") == {}
    shown = masked(s)
    assert "secret-private-key-value" not in str(shown)
    assert shown["webpush"]["vapid_private_key"].startswith("****")
    assert shown["apps"]["shop"]["fcm"]["service_account_file"] == "/etc/shop.json"


def test_env_file_path_and_database_url(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[limits]\nmax_recipients_per_publish = 5\n")
    s = load_settings(
        None, env={"PUSHGATE_CONFIG": str(cfg), "PUSHGATE_DATABASE_URL": "postgresql://u:pw@h/db"}
    )
    assert s.limits.max_recipients_per_publish == 5
    assert s.database_url == "postgresql://u:pw@h/db"
    assert masked(s)["database_url"] == "postgresql://u:****@h/db"


@pytest.mark.parametrize(
    ("text", "env", "names"),
    [
        ('[server]\nport = "eighty"\n', {}, "server.port"),
        ("[server]\nport = 70000\n", {}, "server.port"),
        ("[server]\nprot = 1\n", {}, "server.prot"),
        ("[engine]\nconcurrency = 0\n", {}, "engine.concurrency"),
        ('database_url = "mysql://x"\n', {}, "database_url"),
        ('[webpush]\nvapid_private_key = "${MISSING_VAR}"\n', {}, "webpush.vapid_private_key"),
        ("", {"PUSHGATE_RETRY_MAX_ATTEMPTS": "lots"}, "retry.max_attempts"),
        ("[server\n", {}, "TOML"),
        ("", {"PUSHGATE_DEFAULT_APP_KEY": "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"}, "default_app_key"),
        ("", {"PUSHGATE_REDIS_URL": "http://redis:6379"}, "redis_url"),
        ("[webhooks]\nretry_ladder = []\n", {}, "webhooks.retry_ladder"),
        ('[realtime]\ntoken_secret = "short"\n', {}, "realtime.token_secret"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, env: dict[str, str], names: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env=env)
    assert names in str(exc.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/pushgate.toml", env={})


def test_provider_sections_are_typed(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('[fcm]\nservice_account_file = "/x.json"\nconcurrency = "${CONC}"\n')
    s = load_settings(
        cfg, env={"CONC": "50", "PUSHGATE_WEBPUSH_CONCURRENCY": "7", "PUSHGATE_WEBPUSH_TIMEOUT": "2.5"}
    )
    assert s.providers["fcm"].concurrency == 50
    assert (s.providers["webpush"].concurrency, s.providers["webpush"].timeout) == (7, 2.5)
    assert s.provider_settings("a", "default")["fcm"] == {
        "service_account_file": "/x.json",
        "concurrency": 50,
    }
    cfg.write_text('[fcm]\nservice_account_file = "/x.json"\nconcurency = 5\n')
    with pytest.raises(ConfigError, match=r"fcm\.concurency: unknown key"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match=r"apps\.shop\.webpush\.vapid_key: unknown key"):
        cfg.write_text('[apps.shop.webpush]\nvapid_key = "x"\n')
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match=r"fcm\.colour: unknown key"):
        load_settings(None, env={"PUSHGATE_FCM_COLOUR": "red"})


def test_per_provider_keys_keep_their_file_shape(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        "[retry.apns]\nmax_attempts = 3\n[rate_limits]\nwns_per_second = 5\n"
        "[apps.shop.rate_limits]\nfcm_per_second = 2\napp_per_second = 9\n"
        '[apps.shop.hms]\napp_id = "1"\n'
    )
    s = load_settings(
        cfg, env={"PUSHGATE_RETRY_FCM_JITTER": "0.5", "PUSHGATE_RATE_LIMITS_APNS_PER_SECOND": "7"}
    )
    assert s.retry.by_provider["apns"].max_attempts == 3 and s.retry.by_provider["fcm"].jitter == 0.5
    assert s.rate_limits.provider_rate("wns") == 5.0 and s.rate_limits.provider_rate("apns") == 7.0
    assert s.rate_limits.provider_rate("fcm") == 0.0
    shop = s.apps["shop"]
    assert shop.rate_limits is not None and shop.rate_limits.by_provider == {"fcm": 2.0}
    assert s.provider_settings("app_9", "shop") == {"hms": {"app_id": "1"}}
    shown = masked(s)
    assert shown["retry"]["apns"] == {"max_attempts": 3} and "by_provider" not in shown["retry"]
    assert shown["rate_limits"]["wns_per_second"] == 5.0 and "by_provider" not in shown["rate_limits"]
    assert shown["apps"]["shop"]["rate_limits"] == {"app_per_second": 9.0, "fcm_per_second": 2.0}
    assert shown["apps"]["shop"]["hms"] == {"app_id": "1"} and "providers" not in shown["apps"]["shop"]
    # Every provider's global rate is shown, the defaults (0: no limit) included.
    assert {k for k in shown["rate_limits"] if k.endswith("_per_second")} == {
        f"{p}_per_second" for p in ("app", "fcm", "webpush", "apns", "hms", "wns", "mipush")
    }
    assert shown["rate_limits"]["mipush_per_second"] == 0.0


def test_a_secret_written_as_a_table_is_masked_whole(tmp_path: Path) -> None:
    cfg = tmp_path / "sa.toml"
    cfg.write_text(
        '[fcm.service_account_json]\ntype = "service_account"\nproject_id = "demo"\n'
        'client_email = "push@demo.iam.example"\nprivate_key = "-----BEGIN PRIVATE KEY-----abcdef"\n'
    )
    shown = masked(load_settings(cfg, env={}))
    assert shown["fcm"]["service_account_json"] == "****"
    assert "demo" not in str(shown["fcm"]) and "abcdef" not in str(shown)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[retry.apns]\nmax_attempts = 0\n", {}, r"retry\.apns\.max_attempts"),
        ("[retry.nope]\nmax_attempts = 2\n", {}, r"retry\.nope: unknown key"),
        ("[rate_limits]\nfcm_per_second = -1\n", {}, r"rate_limits\.fcm_per_second"),
        ("[apps.shop.rate_limits]\nhms_per_second = -1\n", {}, r"apps\.shop\.rate_limits\.hms_per_second"),
        ("[apps.shop.fcm]\nconcurrency = 0\n", {}, r"apps\.shop\.fcm\.concurrency"),
        ("[apns]\nenvironment = 'staging'\n", {}, r"apns\.environment"),
        ("[retry]\nby_provider = {}\n", {}, r"retry\.by_provider: unknown key"),
        ("[providers.fcm]\nconcurrency = 1\n", {}, r"providers: unknown key"),
        ("", {"PUSHGATE_SECRET_KEY": "short"}, "secret_key"),
        ("[quarantine]\ncooldown = 10.0\nmax_cooldown = 5.0\n", {}, r"quarantine\.max_cooldown"),
        ("[server]\nlog_level = 'loud'\n", {}, r"server\.log_level"),
    ],
)
def test_per_provider_errors_name_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, env=env)


def test_log_level_any_case() -> None:
    assert load_settings(None, env={"PUSHGATE_SERVER_LOG_LEVEL": "WARNING"}).server.log_level == "WARNING"


def test_fcm_service_account_json_may_be_a_table(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('[fcm.service_account_json]\nclient_email = "a@example.com"\nproject_id = "p"\n')
    s = load_settings(cfg, env={})
    assert s.providers["fcm"].service_account_json == {"client_email": "a@example.com", "project_id": "p"}


def test_bound_errors_say_what_to_write() -> None:
    with pytest.raises(ConfigError, match=r"secret_key: .*openssl rand -base64 32"):
        load_settings(None, env={"PUSHGATE_SECRET_KEY": "short"})
    with pytest.raises(ConfigError, match=r"retry\.apns\.jitter: .*in \[0, 1\)"):
        load_settings(None, env={"PUSHGATE_RETRY_APNS_JITTER": "1"})


def test_log_level_is_matched_whole() -> None:
    """Python's ``$`` also matches before a trailing newline: the pattern must not let one in."""
    assert load_settings(None, env={"PUSHGATE_SERVER_LOG_LEVEL": "DEBUG"}).server.log_level == "DEBUG"
    with pytest.raises(ConfigError, match=r"server\.log_level"):
        load_settings(None, env={"PUSHGATE_SERVER_LOG_LEVEL": "info\n"})


def test_a_chosen_default_app_key_has_a_floor() -> None:
    key = "k" * 24
    assert load_settings(None, env={"PUSHGATE_DEFAULT_APP_KEY": key}).default_app_key == key
    with pytest.raises(ConfigError, match=r"default_app_key.*at least 24 characters"):
        load_settings(None, env={"PUSHGATE_DEFAULT_APP_KEY": "k" * 23})


def test_compat_sections_from_the_file_and_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[compat.centrifugo]\nprefix = "/centrifugo"\n[compat.gorush]\napp = "shop"\n')
    s = load_settings(
        cfg,
        env={
            "PUSHGATE_COMPAT_GORUSH_REQUIRE_KEY": "false",
            "PUSHGATE_COMPAT_NOTIFICATION_SOCKETIO_ENABLED": "0",
        },
    )
    assert s.compat.centrifugo.prefix == "/centrifugo" and s.compat.centrifugo.enabled
    assert (s.compat.gorush.app, s.compat.gorush.require_key) == ("shop", False)
    assert not s.compat.notification_socketio.enabled and s.compat.sockudo.enabled
    with pytest.raises(ConfigError, match=r"compat\.sentori\.prefix"):
        load_settings(None, env={"PUSHGATE_COMPAT_SENTORI_PREFIX": "no-slash"})
