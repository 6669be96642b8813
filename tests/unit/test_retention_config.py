"""``[retention]`` and ``[apps.<name>.retention]``: defaults, fractions of a day, per-app
overrides, environment overrides and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.config import ConfigError, load_settings, masked


def test_defaults_keep_a_week() -> None:
    s = load_settings(None, env={})
    assert s.retention.days == 7.0
    assert s.retention.interval_seconds == 600.0
    assert s.retention.batch_size == 500
    assert s.retention_days("app_1", "default") == 7.0


def test_an_app_section_replaces_the_global_days(tmp_path: Path) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text(
        "[retention]\ndays = 0.5\ninterval_seconds = 30\nbatch_size = 200\n"
        "[apps.shop.retention]\ndays = 30\n"
        "[apps.app_9.retention]\ndays = 0\n"
        "[apps.quiet.rate_limits]\napp_per_second = 5\n"
    )
    s = load_settings(cfg, env={})
    assert (s.retention.days, s.retention.interval_seconds, s.retention.batch_size) == (0.5, 30.0, 200)
    assert s.retention_days("app_2", "shop") == 30.0  # by name
    assert s.retention_days("app_9", "renamed") == 0.0  # by id; 0 keeps everything
    assert s.retention_days("app_3", "quiet") == 0.5  # an app section without retention
    assert s.retention_days("app_4", "other") == 0.5
    shown = masked(s)
    assert shown["retention"]["days"] == 0.5
    assert shown["apps"]["shop"]["retention"] == {"days": 30.0}


def test_environment_overrides_accept_fractions_of_a_day() -> None:
    s = load_settings(
        None, env={"PUSHGATE_RETENTION_DAYS": "0.0001", "PUSHGATE_RETENTION_INTERVAL_SECONDS": "0.5"}
    )
    assert s.retention.days == 0.0001
    assert s.retention.interval_seconds == 0.5


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[retention]\ndays = -1\n", "retention.days"),
        ("[retention]\ninterval_seconds = 0\n", "retention.interval_seconds"),
        ("[retention]\nbatch_size = 0\n", "retention.batch_size"),
        ("[retention]\nbatch_size = 1000000\n", "retention.batch_size"),
        ("[retention]\nweeks = 2\n", "retention.weeks"),
        ("[apps.shop.retention]\ndays = -2\n", "apps.shop.retention.days"),
        ("[apps.shop.retention]\nhours = 2\n", "apps.shop.retention.hours"),
    ],
)
def test_bad_retention_values_name_the_key(tmp_path: Path, text: str, names: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, env={})
    assert names in str(exc.value)
