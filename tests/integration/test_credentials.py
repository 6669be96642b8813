"""Provider credentials through the API: write-only, encrypted, rotated live, deletable."""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import fcm_token, publish, register_fcm_batched, wait_final
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab, service_account
from support.wait import wait_for

from pushgate.store.schema import credentials


async def test_without_master_key_uploads_are_409(gateway: Gateway, lab: Lab) -> None:
    r = await gateway.client.put("/v1/credentials/fcm", json={"service_account": service_account(lab)})
    assert r.status_code == 409
    assert "PUSHGATE_SECRET_KEY" in r.json()["error"]["message"]
    # Config-file credentials are listed as metadata.
    items = (await gateway.client.get("/v1/credentials")).json()["items"]
    assert {(i["provider"], i["source"]) for i in items} >= {("fcm", "config"), ("webpush", "config")}
    assert "BEGIN PRIVATE KEY" not in json.dumps(items)


async def test_upload_list_use_delete(database_url: str, lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("tenant")
        sa_json = service_account(lab)
        secret = sa_json["private_key"]
        secret_line = secret.splitlines()[5]
        async with gw.as_app(key) as c:
            assert (await c.get("/v1/credentials")).json()["items"] == []
            # A broken upload is a 400 that does not echo the secret.
            broken = {
                **sa_json,
                "private_key": "-----BEGIN PRIVATE KEY-----\nnot-a-key-at-all-xyz\n-----END PRIVATE KEY-----",
            }
            r = await c.put("/v1/credentials/fcm", json={"service_account": broken})
            assert r.status_code == 400 and "not-a-key-at-all-xyz" not in r.text
            r = await c.put("/v1/credentials/fcm", json={"service_account_file": "/etc/passwd"})
            assert r.status_code == 400 and "upload the content" in r.text
            r = await c.put("/v1/credentials/fcm", json={"service_account": sa_json, "colour": "red"})
            assert r.status_code == 400
            assert (await c.put("/v1/credentials/nope", json={})).status_code == 404

            r = await c.put("/v1/credentials/fcm", json={"service_account": sa_json})
            assert r.status_code == 200, r.text
            cred = r.json()["credential"]
            assert cred["source"] == "api" and cred["version"] == 1
            assert sa_json["client_email"] in cred["fingerprint"]
            listed = await c.get("/v1/credentials")
            for raw in (r.text, listed.text):
                assert secret_line not in raw and "PRIVATE KEY" not in raw
            assert [i["provider"] for i in listed.json()["items"]] == ["fcm"]

            # Stored encrypted: the private key is not in the database row.
            db = gw.app.state.services.db
            async with db.read() as conn:
                blob = (await conn.execute(sa.select(credentials.c.ciphertext))).scalar()
            assert secret_line.encode() not in blob and b"private_key" not in blob

            dev = (
                await c.post(
                    "/v1/devices", json={"provider": "fcm", "token": fcm_token(), "platform": "android"}
                )
            ).json()["device"]
            pub = await publish(c, recipients=[{"type": "device", "device_id": dev["id"]}])
            status = await wait_final(c, pub, 20)
            assert status["status"] == "completed" and status["counts"]["sent"] == 1
            assert lab.ledger("fcm", dev["token"])["total"] == 1

            # Delete: this app has no file credentials, so publishes fail with a clear reason.
            assert (await c.delete("/v1/credentials/fcm")).status_code == 204
            assert (await c.delete("/v1/credentials/fcm")).status_code == 404
            pub = await publish(c, recipients=[{"type": "device", "device_id": dev["id"]}])
            status = await wait_final(c, pub, 20)
            assert status["status"] == "failed" and status["error"]["code"] == "no_credentials"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret_line not in logged and MASTER not in logged


async def test_webpush_generated_keys(database_url: str, lab: Lab) -> None:
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("web-tenant")
        async with gw.as_app(key) as c:
            r = await c.put(
                "/v1/credentials/webpush", json={"generate": True, "vapid_subject": "mailto:a@example.com"}
            )
            assert r.status_code == 200, r.text
            public = r.json()["credential"]["vapid_public_key"]
            assert "vapid_private_key" not in r.text
            with lab.client() as lc:
                sub = lc.post("/webpush/subscriptions", json={"application_server_key": public}).json()
            dev = (
                await c.post("/v1/devices", json={"provider": "webpush", "token": sub, "platform": "web"})
            ).json()
            pub = await publish(c, recipients=[{"type": "device", "device_id": dev["device"]["id"]}])
            status = await wait_final(c, pub, 20)
            assert status["counts"]["sent"] == 1, status
            [item] = lab.ledger("webpush", sub["endpoint"])["items"]
            assert item["payload"]["title"] == "Hello"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_rotation_during_fanout_loses_nothing(database_url: str, lab: Lab) -> None:
    """Rotate the FCM credential while a 5,000-device fan-out runs: no delivery fails."""
    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_SECRET_KEY=MASTER, PUSHGATE_ENGINE_BATCH_SIZE="100"
    )
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("rotating")
        sa_json = service_account(lab)
        async with gw.as_app(key) as c:
            assert (await c.put("/v1/credentials/fcm", json={"service_account": sa_json})).status_code == 200

            # Through the batch route (5 requests, not 5,000): registration is not what this
            # test is about, and one request a device took most of its run.
            await register_fcm_batched(c, "all", 5000)
            lab.fault(provider="fcm", latency_ms=20)  # keep the fan-out running while we rotate
            pub = await publish(c, recipients=[{"type": "channel", "channel": "all"}])
            versions: list[int] = []
            sent_at_rotation: list[int] = []

            async def sent() -> int:
                return int((await c.get(f"/v1/publishes/{pub}")).json()["counts"]["sent"])

            for _ in range(3):
                # Each rotation after more went out (not after a fixed sleep: planning a slow
                # machine's first page may take longer than any fixed wait).
                await wait_for(
                    partial(_above, sent, sent_at_rotation[-1] if sent_at_rotation else 0),
                    20,
                    "more sent",
                    interval=0.05,
                )
                r = await c.put("/v1/credentials/fcm", json={"service_account": sa_json})
                versions.append(r.json()["credential"]["version"])
                sent_at_rotation.append((await c.get(f"/v1/publishes/{pub}")).json()["counts"]["sent"])
            status = await wait_final(c, pub, 20)
            assert versions == [2, 3, 4]
            assert 0 < sent_at_rotation[0] < 5000, sent_at_rotation  # rotated mid-flight
            assert status["status"] == "completed"
            assert status["counts"]["sent"] == 5000 and status["counts"]["failed"] == 0
            assert lab.ledger("fcm")["total"] == 5000


async def _above(read: Any, floor: int) -> bool:
    return bool(await read() > floor)


async def test_metrics_endpoint_exposes_credential_expiry(gateway: Gateway) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        r = await anon.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "# TYPE pushgate_credential_expiry_timestamp_seconds gauge" in r.text


async def test_apns_certificate_upload_shows_expiry_and_delivers(database_url: str, lab: Lab) -> None:
    import base64
    import secrets
    import tomllib

    import httpx

    lab.reset()
    apns_cfg = tomllib.loads(lab.toml.read_text())["apns"]
    settings = gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("ios-shop")
        p12 = base64.b64encode((lab.creds_dir / "apns-client.p12").read_bytes()).decode()
        body = {
            "certificate_p12_base64": p12,
            "certificate_password": "pushgate-lab",
            "bundle_id": "com.pushgate.lab",
            "environment": "production",
            # The lab's TLS listener (client certificates need TLS), trusting the lab's CA.
            "base_url": apns_cfg["base_url"],
            "ca_pem": (lab.creds_dir / "apns-ca.pem").read_text(),
        }
        async with gw.as_app(key) as c:
            r = await c.put("/v1/credentials/apns", json=body)
            assert r.status_code == 200, r.text
            cred = r.json()["credential"]
            assert cred["fingerprint"].startswith("cert ") and cred["expires_at"]
            assert p12[:40] not in r.text and 'pushgate-lab"' not in r.text
            token = secrets.token_hex(32)
            dev = (
                await c.post("/v1/devices", json={"provider": "apns", "token": token, "platform": "ios"})
            ).json()
            pub = await publish(c, recipients=[{"type": "device", "device_id": dev["device"]["id"]}])
            status = await wait_final(c, pub, 20)
            assert status["counts"]["sent"] == 1, status
            assert lab.ledger("apns", token)["total"] == 1
        async with httpx.AsyncClient(base_url=gw.url) as anon:
            metrics = (await anon.get("/metrics")).text
        app_id = (await gw.app.state.services.apps.get_by_name("ios-shop")).id
        assert f'pushgate_credential_expiry_timestamp_seconds{{app_id="{app_id}",provider="apns"}}' in metrics


async def test_credentials_stored_meanwhile_under_another_key_fail_as_credential_invalid(
    database_url: str, lab: Lab
) -> None:
    """A process whose secret_key cannot read the stored credentials refuses to start
    (test_config_secrets.py); one already running when another process (with another key)
    uploads them keeps serving and fails those deliveries with ``credential_invalid``."""
    lab.reset()
    other = gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY="another-master-key-0123456789")
    first = gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)
    async with running_gateway(other) as gw:
        async with running_gateway(first) as uploader:
            _, key = await uploader.app.state.services.apps.create("rekeyed")
            async with uploader.as_app(key) as c:
                r = await c.put("/v1/credentials/fcm", json={"service_account": service_account(lab)})
                assert r.status_code == 200, r.text
        async with gw.as_app(key) as c:
            body = {"provider": "fcm", "token": fcm_token(), "platform": "android"}
            dev = (await c.post("/v1/devices", json=body)).json()
            pub = await publish(c, recipients=[{"type": "device", "device_id": dev["device"]["id"]}])
            status = await wait_final(c, pub, 20)
            [d] = (await c.get(f"/v1/publishes/{pub}/deliveries")).json()["items"]
            assert d["status"] == "failed" and d["error_code"] == "credential_invalid"
            assert "secret_key" in d["error_message"]
            assert status["counts"]["failed"] == 1
    assert lab.ledger("fcm")["total"] == 0
