"""``pushgate apps keys create|list|revoke``, run as a real program against a running gateway's
database (both databases): the key printed once works with its scopes, the listing never shows
a secret, a revoked key is refused."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess

from support.gateway import Gateway
from support.process import PUSHGATE


async def pushgate(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PUSHGATE_DATABASE_URL": gw.settings.database_url, "COLUMNS": "80"}
    env.pop("PUSHGATE_CONFIG", None)
    return await asyncio.to_thread(
        subprocess.run, [PUSHGATE, *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_keys_created_listed_and_revoked_from_the_command_line(gateway: Gateway) -> None:
    created = await pushgate(
        gateway, "apps", "keys", "create", "default", "billing backend", "-s", "publish,read"
    )
    assert created.returncode == 0, created.stderr
    secret = re.search(r"^(pgk_\S+)$", created.stdout, re.M)  # alone on its line: copyable
    assert secret, created.stdout
    key_id = re.search(r"id (key_\w+)", created.stdout)
    assert key_id and "scopes publish read" in created.stdout
    async with gateway.as_app(secret.group(1)) as client:
        assert (await client.get("/v1/devices")).status_code == 200
        assert (await client.post("/v1/devices", json={})).status_code == 403  # no register scope

    listed = await pushgate(gateway, "apps", "keys", "list", "default")
    assert listed.returncode == 0, listed.stderr
    assert secret.group(1) not in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if key_id.group(1) in line)  # never cut
    assert "billing backend" in row and "publish,read" in row and secret.group(1)[:8] in row

    never_used = await pushgate(gateway, "apps", "keys", "create", "default", "spare", "--scope", "read")
    spare = re.search(r"^(pgk_\S+)$", never_used.stdout, re.M)
    spare_id = re.search(r"id (key_\w+)", never_used.stdout)
    assert spare and spare_id
    revoked = await pushgate(gateway, "apps", "keys", "revoke", "default", spare_id.group(1))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    async with gateway.as_app(spare.group(1)) as client:
        assert (await client.get("/v1/devices")).status_code == 401
    after = await pushgate(gateway, "apps", "keys", "list", "default")
    row = next(line for line in after.stdout.splitlines() if spare_id.group(1) in line)
    assert re.search(r"\d{4}-\d\d-\d\dT\S+Z\s*$", row), row  # the revoked column is filled


async def test_keys_commands_say_what_is_wrong(gateway: Gateway) -> None:
    bad_scope = await pushgate(gateway, "apps", "keys", "create", "default", "x", "-s", "write")
    assert bad_scope.returncode == 2 and "unknown scope 'write'" in bad_scope.stderr
    short = await pushgate(gateway, "apps", "keys", "create", "default", "x", "--key", "short")
    assert short.returncode == 2 and "at least 24 characters" in short.stderr
    no_app = await pushgate(gateway, "apps", "keys", "list", "nope")
    assert no_app.returncode == 1 and "no app named 'nope'" in no_app.stderr
    no_key = await pushgate(gateway, "apps", "keys", "revoke", "default", "key_nope")
    assert no_key.returncode == 1 and "has no key 'key_nope'" in no_key.stderr
