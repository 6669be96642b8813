"""docs/security.md's configuration example is a config pushgate loads, with the values it says."""

from __future__ import annotations

import pathlib
import re

from pushgate.config import load_settings

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_the_reverse_proxy_example_loads(tmp_path: pathlib.Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    path = tmp_path / "pushgate.toml"
    path.write_text(blocks[0])
    settings = load_settings(path, env={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.trusted_proxies == ["127.0.0.1"]
    assert settings.server.header_timeout == 10.0
    assert settings.server.body_timeout == 30.0
    assert settings.auth.max_failures == 20
    assert settings.auth.block_seconds == 300.0
