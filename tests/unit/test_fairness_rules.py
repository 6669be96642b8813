"""Per-app backpressure thresholds (issue 9, item 5): ``[apps.<name>.limits]`` over ``[limits]``,
and the verdicts, without a database (the queue is never asked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushgate.config import ConfigError, load_settings
from pushgate.engine.backpressure import Backpressure, Thresholds


def _backpressure(tmp_path: Path, toml: str) -> Backpressure:
    cfg = tmp_path / "p.toml"
    cfg.write_text(toml)
    s = load_settings(cfg, env={})
    return Backpressure(None, s.limits, s.apps)  # type: ignore[arg-type]


def test_an_apps_own_limits_replace_the_defaults_key_by_key(tmp_path: Path) -> None:
    bp = _backpressure(
        tmp_path,
        "[limits]\nmax_queue_depth = 10\nmax_queue_age_seconds = 30\n"
        "[apps.big.limits]\nmax_queue_depth = 1000\n"
        "[apps.app_strict.limits]\nmax_queue_age_seconds = 0\n",
    )
    assert bp.thresholds("app_1", "big") == Thresholds(1000, 30)  # by name; the age is [limits]'
    assert bp.thresholds("app_strict", "renamed") == Thresholds(10, 0)  # by id
    assert bp.thresholds("app_2", "small") == Thresholds(10, 30)
    # 500 jobs: over the default, under big's own limit.
    assert bp.evaluate(500, None, 100.0, bp.thresholds("app_2", "small")) is not None
    assert bp.evaluate(500, None, 100.0, bp.thresholds("app_1", "big")) is None
    over = bp.evaluate(1001, 50.0, 100.0, bp.thresholds("app_1", "big"))
    assert over is not None and "more than 1000 jobs" in over.reason and over.retry_after == 5
    late = bp.evaluate(1, 0.0, 100.0, bp.thresholds("app_1", "big"))
    assert late is not None and "limits.max_queue_age_seconds (30)" in late.reason


def test_backpressure_is_on_when_only_an_app_sets_a_limit(tmp_path: Path) -> None:
    off = "[limits]\nmax_queue_depth = 0\nmax_queue_age_seconds = 0\n"
    assert not _backpressure(tmp_path, off).enabled
    assert _backpressure(tmp_path, off + "[apps.noisy.limits]\nmax_queue_depth = 50\n").enabled


def test_an_apps_limits_are_checked_and_named_when_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"apps\.noisy.*max_queue_depth"):
        _backpressure(tmp_path, "[apps.noisy.limits]\nmax_queue_depth = -1\n")
    with pytest.raises(ConfigError, match=r"apps\.noisy"):
        _backpressure(tmp_path, "[apps.noisy.limits]\nmax_depth = 5\n")
