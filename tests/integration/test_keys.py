"""API keys with names, scopes and revocation, through the real API (both databases), and the
migration that gives keys from before scopes every scope."""

from __future__ import annotations

import time
from typing import Any

import httpx
import sqlalchemy as sa
from alembic import command
from support.api import fcm_token
from support.gateway import Gateway

from pushgate.domain.scopes import ALL_SCOPES
from pushgate.server import ensure_default_app
from pushgate.store.apps import AppStore, hash_key
from pushgate.store.db import Database, alembic_config


async def create_key(gw: Gateway | httpx.AsyncClient, name: str, *scopes: str) -> tuple[dict[str, Any], str]:
    client = gw if isinstance(gw, httpx.AsyncClient) else gw.client
    r = await client.post("/v1/keys", json={"name": name, "scopes": list(scopes)})
    assert r.status_code == 201, r.text
    body = r.json()
    return body["key"], body["secret"]


async def test_a_created_key_works_and_its_secret_is_never_listed(gateway: Gateway) -> None:
    meta, secret = await create_key(gateway, "billing backend", "publish", "read")
    assert secret.startswith("pgk_") and len(secret) >= 40
    assert meta["scopes"] == ["publish", "read"] and meta["prefix"] == secret[:8]
    async with gateway.as_app(secret) as client:
        assert (await client.get("/v1/devices")).status_code == 200
    listed = await gateway.client.get("/v1/keys")
    assert listed.status_code == 200
    assert secret not in listed.text and hash_key(secret) not in listed.text
    by_name = {k["name"]: k for k in listed.json()["items"]}
    assert set(by_name) == {"initial", "billing backend"}
    assert by_name["initial"]["current"] is True and "current" not in by_name["billing backend"]
    assert by_name["billing backend"]["last_used_at"]  # it was used above
    assert by_name["initial"]["scopes"] == sorted(ALL_SCOPES)


async def test_each_scope_opens_only_its_routes(gateway: Gateway) -> None:
    _, reader = await create_key(gateway, "dashboard", "read")
    _, publisher = await create_key(gateway, "campaigns", "publish")
    _, registrar = await create_key(gateway, "mobile backend", "register")
    publish = {"recipients": [{"type": "channel", "channel": "news"}], "notification": {"title": "t"}}
    device = {"provider": "fcm", "token": fcm_token(), "platform": "android"}
    async with (
        gateway.as_app(reader) as read,
        gateway.as_app(publisher) as pub,
        gateway.as_app(registrar) as reg,
    ):
        assert (await read.get("/v1/publishes")).status_code == 200
        denied = await read.post("/v1/devices", json=device)
        assert denied.status_code == 403, denied.text
        assert denied.json()["error"]["code"] == "forbidden"
        assert "needs the register scope" in denied.json()["error"]["message"]
        assert (await read.post("/v1/publish", json=publish)).status_code == 403
        assert (await pub.post("/v1/publish", json=publish)).status_code == 202
        assert (await pub.post("/v1/devices", json=device)).status_code == 403
        assert (await pub.get("/v1/devices")).status_code == 403
        assert (await reg.post("/v1/devices", json=device)).status_code == 200
        assert (await reg.post("/v1/publish", json=publish)).status_code == 403
        for client in (read, pub, reg):
            assert (await client.get("/v1/keys")).status_code == 403
            assert (await client.get("/v1/credentials")).status_code == 403
            assert (await client.post("/v1/keys", json={"name": "x", "scopes": ["admin"]})).status_code == 403
    _, admin = await create_key(gateway, "ops", "admin")
    async with gateway.as_app(admin) as adm:
        assert (await adm.post("/v1/devices", json={**device, "token": fcm_token()})).status_code == 200
        assert (await adm.get("/v1/keys")).status_code == 200


async def test_a_revoked_key_is_refused_at_once_and_stays_listed(gateway: Gateway) -> None:
    meta, secret = await create_key(gateway, "old backend", "read")
    async with gateway.as_app(secret) as client:
        assert (await client.get("/v1/devices")).status_code == 200  # now in the key cache
        r = await gateway.client.delete(f"/v1/keys/{meta['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["key"]["revoked_at"]
        refused = await client.get("/v1/devices")
        assert refused.status_code == 401, "a revoked key must not live on in the cache"
    listed = {k["id"]: k for k in (await gateway.client.get("/v1/keys")).json()["items"]}
    assert listed[meta["id"]]["revoked_at"]
    again = await gateway.client.delete(f"/v1/keys/{meta['id']}")
    assert again.status_code == 200 and again.json()["key"]["revoked_at"] == listed[meta["id"]]["revoked_at"]


async def test_an_app_cannot_revoke_its_last_admin_key(gateway: Gateway) -> None:
    keys = (await gateway.client.get("/v1/keys")).json()["items"]
    (initial,) = keys
    r = await gateway.client.delete(f"/v1/keys/{initial['id']}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_admin_key", r.text
    assert "create another admin key first" in r.json()["error"]["message"]
    _, other = await create_key(gateway, "successor", "admin")
    assert (await gateway.client.delete(f"/v1/keys/{initial['id']}")).status_code == 200
    assert (await gateway.client.get("/v1/keys")).status_code == 401
    async with gateway.as_app(other) as client:
        assert (await client.get("/v1/keys")).status_code == 200


async def test_a_key_never_reaches_another_apps_keys(gateway: Gateway) -> None:
    apps: AppStore = gateway.app.state.services.apps
    _, b_key = await apps.create("tenant-b")
    a_keys = (await gateway.client.get("/v1/keys")).json()["items"]
    async with gateway.as_app(b_key) as b:
        listed = (await b.get("/v1/keys")).json()["items"]
        assert [k["name"] for k in listed] == ["initial"]
        assert not {k["id"] for k in listed} & {k["id"] for k in a_keys}
        r = await b.delete(f"/v1/keys/{a_keys[0]['id']}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await gateway.client.get("/v1/keys")).status_code == 200  # A's key still works


async def test_bad_key_requests_are_clear_400s(gateway: Gateway) -> None:
    for body, where in (
        ({"name": "x", "scopes": ["write"]}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "line\nbreak", "scopes": ["read"]}, "name"),
        ({"scopes": ["read"]}, "name"),
    ):
        r = await gateway.client.post("/v1/keys", json=body)
        assert r.status_code == 400, (body, r.text)
        assert where in r.json()["error"]["message"], r.text
    assert len((await gateway.client.get("/v1/keys")).json()["items"]) == 1  # nothing was created


async def test_existing_keys_get_every_scope_when_migrated(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        async with db.write() as conn:
            await conn.run_sync(lambda c: _upgrade_to(c, "0006"))
            await conn.execute(
                sa.text("INSERT INTO apps (id, name, created_at) VALUES ('app_old', 'old', 1)")
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, app_id, key_hash, prefix, created_at) "
                    "VALUES ('key_old', 'app_old', :h, 'old-key-', 1)"
                ),
                {"h": hash_key("old-key-from-before-scopes-0123")},
            )
        await db.migrate()
        principal = await AppStore(db).authenticate("old-key-from-before-scopes-0123")
        assert principal is not None
        assert principal.app.name == "old" and principal.key.scopes == ALL_SCOPES
        assert principal.key.name == "initial" and principal.key.revoked_at is None
    finally:
        await db.dispose()


def _upgrade_to(conn: sa.Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def test_last_used_is_written_at_most_once_a_minute(gateway: Gateway) -> None:
    meta, secret = await create_key(gateway, "poller", "read")
    services = gateway.app.state.services
    default = await services.apps.get_by_name("default")

    async def last_used() -> float | None:
        return {k.id: k for k in await services.apps.list_keys(default.id)}[meta["id"]].last_used_at

    assert await last_used() is None
    async with gateway.as_app(secret) as client:
        assert (await client.get("/v1/devices")).status_code == 200
        used = await last_used()
        assert used is not None and abs(used - time.time()) < 30
        services.gate.cache.drop(meta["id"])  # the next request looks the key up again
        assert (await client.get("/v1/devices")).status_code == 200
    assert await last_used() == used


async def test_a_revoked_default_app_key_stays_revoked_and_the_start_says_so(database_url: str) -> None:
    db = Database(database_url)
    said: list[str] = []
    key = "configured-default-key-0123456789"
    try:
        await db.migrate()
        apps = AppStore(db)
        await ensure_default_app(apps, key, said.append)
        principal = await apps.authenticate(key)
        assert principal is not None
        await apps.revoke_key(principal.app.id, principal.key.id, keep_an_admin=False)
        said.clear()
        await ensure_default_app(apps, key, said.append)  # the next start, same config
        assert await apps.authenticate(key) is None
        assert len(said) == 1 and "PUSHGATE_DEFAULT_APP_KEY was revoked" in said[0], said
    finally:
        await db.dispose()
