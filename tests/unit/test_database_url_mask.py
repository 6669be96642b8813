"""The database password is masked however the URL writes it (``pushgate config show`` and the
start banner of ``pushgate serve``; issue 9, item 11)."""

from __future__ import annotations

import pytest

from pushgate.cli.common import redact_database_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+asyncpg://u:pw@h/db", "postgresql+asyncpg://u:****@h/db"),
        # An @ in the password: the old mask cut at the first @ and showed the rest of it.
        ("postgresql+asyncpg://u:p@ss-word@h:5432/db", "postgresql+asyncpg://u:****@h:5432/db"),
        # No user name: the old mask showed the password whole.
        ("postgresql://:s3cret-pass@h/db", "postgresql://:****@h/db"),
        ("postgresql://u:a/b?c@h/db", "postgresql://u:****@h/db"),
        (
            "postgresql://u@h/db?sslmode=require&password=s3cret",
            "postgresql://u@h/db?sslmode=require&password=****",
        ),
        ("postgresql://u:pw@h1,h2/db?sslpassword=s3cret", "postgresql://u:****@h1,h2/db?sslpassword=****"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("sqlite+aiosqlite:///./var/pushgate.db", "sqlite+aiosqlite:///./var/pushgate.db"),
    ],
)
def test_database_passwords_are_masked_wherever_they_are_written(url: str, shown: str) -> None:
    assert redact_database_url(url) == shown


def test_the_redis_password_is_masked_in_config_show() -> None:
    from pushgate.cli.common import shown_settings
    from pushgate.config import load_settings

    settings = load_settings(None, env={"PUSHGATE_REDIS_URL": "redis://:hunter2-secret@r.internal:6379/0"})
    assert shown_settings(settings)["redis_url"] == "redis://:****@r.internal:6379/0"
    assert "hunter2" not in str(shown_settings(settings))
