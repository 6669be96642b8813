"""Secrets of the configuration (issue 9, item 11).

A changed or missing ``secret_key`` is refused at start when credentials uploaded through the
API are stored: before, a wrong key started and failed every delivery of those apps with
``credential_invalid``, and a missing one silently used the config file instead. The database
password is masked in the start banner and in ``pushgate config show`` however it is written."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from support.gateway import APP_KEY, MASTER, gateway_settings, running_gateway
from support.lab import Lab, free_port, service_account
from support.process import PUSHGATE

from pushgate.server import create_app
from pushgate.store.secretbox import SecretKeyError

OTHER = "another-master-key-0123456789abcdef"


def _flat(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and, for an exception group (the ASGI lifespan's task group), all it holds."""
    yield exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _flat(inner)


def pushgate(*args: str, database_url: str, secret_key: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PUSHGATE_DATABASE_URL": database_url, "PUSHGATE_DEFAULT_APP_KEY": APP_KEY}
    env.pop("PUSHGATE_CONFIG", None)
    env.pop("PUSHGATE_SECRET_KEY", None)
    if secret_key is not None:
        env["PUSHGATE_SECRET_KEY"] = secret_key
    return subprocess.run([PUSHGATE, *args], capture_output=True, text=True, env=env, timeout=60)


async def test_a_changed_or_missing_secret_key_is_refused_at_start(database_url: str, lab: Lab) -> None:
    lab.reset()
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as gw:
        r = await gw.client.put("/v1/credentials/fcm", json={"service_account": service_account(lab)})
        assert r.status_code == 200, r.text

    port = str(free_port())
    changed = pushgate("serve", "--port", port, database_url=database_url, secret_key=OTHER)
    assert changed.returncode == 2, changed.stdout + changed.stderr
    said = " ".join(changed.stderr.split())
    assert "secret_key differs from the one they were uploaded with" in said
    assert "app 'default' fcm" in said and "PUSHGATE_SECRET_KEY" in said
    assert OTHER not in changed.stdout + changed.stderr

    missing = pushgate("worker", database_url=database_url, secret_key=None)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    said = " ".join(missing.stderr.split())
    assert "secret_key is not set" in said and "app 'default' fcm" in said

    # The app's own start refuses too, whoever embeds it (uvicorn then exits with status 3).
    app = create_app(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=OTHER), echo=lambda _: None)
    with pytest.raises(BaseException) as refused:
        async with app.lifespan():
            pass
    assert any(isinstance(e, SecretKeyError) for e in _flat(refused.value)), refused.value
    # The key the credentials were stored with starts, and they are used.
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as gw:
        items = (await gw.client.get("/v1/credentials")).json()["items"]
        assert {(i["provider"], i["source"]) for i in items} >= {("fcm", "api")}


async def test_without_stored_credentials_any_key_or_none_starts(database_url: str, lab: Lab) -> None:
    """Nothing stored, nothing to protect: a first start, a new key or no key at all is fine."""
    lab.reset()
    for key in (MASTER, OTHER, None):
        env = {"PUSHGATE_SECRET_KEY": key} if key else {}
        settings = gateway_settings(database_url, lab, **env)
        if key is None:
            settings.secret_key = None
        async with running_gateway(settings) as gw:
            assert (await gw.client.get("/readyz")).status_code == 200


def test_the_database_password_is_masked_in_the_banner_and_config_show() -> None:
    """A password holding ``@`` used to show its tail (the mask cut at the first ``@``)."""
    url = f"postgresql+asyncpg://pushgate:p@ss-w0rd@127.0.0.1:{free_port()}/pushgate"
    served = pushgate("serve", "--port", str(free_port()), database_url=url, secret_key=None)
    out = served.stdout + served.stderr
    # Nothing listens there: the banner is printed, then the start fails (exit 3).
    assert served.returncode == 3, out
    assert "(database postgresql+asyncpg://pushgate:****@127.0.0.1:" in " ".join(served.stdout.split())
    shown = pushgate("config", "show", database_url=url, secret_key=None)
    assert shown.returncode == 0, shown.stderr
    assert '"database_url": "postgresql+asyncpg://pushgate:****@127.0.0.1:' in shown.stdout
    for text in (out, shown.stdout + shown.stderr):
        assert "ss-w0rd" not in text
