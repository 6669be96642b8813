"""The outbound URL policy through a running gateway (issue 9, items 1 and 2).

Each test reproduces what the red team did: credentials whose URLs point at an internal
service, endpoints stored while the lab allowance was on and sent to after it was turned off,
delivery errors used as a port scanner, and spellings of loopback that slipped through. An
"internal service" is a listening socket on loopback that counts the connections it accepts:
none may arrive without the operator's allowance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.api import deliveries, publish, register, wait_final
from support.gateway import MASTER, gateway_settings, running_gateway
from support.lab import Lab, free_port, service_account
from support.wait import wait_for

STRICT = {"PUSHGATE_DEVICES_ALLOW_LOOPBACK_ENDPOINTS": "false"}


class Internal:
    """An "internal service" on loopback: answers every request 201 and counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 17\r\n\r\ninternal answer!!")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def url(self, path: str = "/", scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def internal() -> AsyncIterator[Internal]:
    svc = Internal()
    svc.server = await asyncio.start_server(svc._serve, "127.0.0.1", 0)
    svc.port = svc.server.sockets[0].getsockname()[1]
    yield svc
    svc.server.close()
    await svc.server.wait_closed()


async def test_uploaded_credentials_may_only_name_the_providers_hosts(
    database_url: str, lab: Lab, internal: Internal
) -> None:
    """A tenant's HMS/MiPush/FCM credentials pointing at an internal service are refused at upload
    (400 saying why and who can allow it), nothing is stored, nothing connects there."""
    lab.reset()
    settings = gateway_settings(
        database_url,
        lab,
        PUSHGATE_SECRET_KEY=MASTER,
        PUSHGATE_OUTBOUND_UPLOAD_HOSTS='["push.corp.example"]',
        **STRICT,
    )
    hms = {"app_id": "123", "client_secret": "a-client-secret-0123456789"}
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("tenant")
        async with gw.as_app(key) as c:
            refused: list[tuple[str, dict[str, Any], str]] = [
                ("hms", {**hms, "token_url": internal.url("/oauth2/v3/token")}, "loopback address"),
                ("hms", {**hms, "token_url": internal.url("/t", "http")}, "must use https://"),
                ("hms", {**hms, "base_url": "https://internal.corp.example/hms"}, "is not a hms host"),
                ("hms", {**hms, "base_url": "https://0x7f.1/hms"}, "dotted quad: 127.0.0.1"),
                ("hms", {**hms, "token_url": "https://evil.example\\.huawei.com/t"}, "backslash"),
                (
                    "mipush",
                    {"app_secret": "s" * 24, "package_name": "a.b", "base_url": "https://10.0.0.5/"},
                    "private address",
                ),
                (
                    "fcm",
                    {
                        "service_account": {
                            **service_account(lab),
                            "token_uri": "https://metadata.corp.example/t",
                        }
                    },
                    "is not a fcm host",
                ),
                (
                    "wns",
                    {
                        "package_sid": "ms-app://s-1",
                        "client_secret": "x" * 24,
                        "token_url": internal.url("/t"),
                    },
                    "loopback address",
                ),
            ]
            for provider, body, says in refused:
                r = await c.put(f"/v1/credentials/{provider}", json=body)
                assert r.status_code == 400, (provider, body, r.text)
                error = r.json()["error"]
                assert error["code"] == "invalid_request" and says in error["message"], error
                assert "a-client-secret" not in error["message"]
            r = await c.put("/v1/credentials/hms", json={**hms, "base_url": "https://internal.corp.example/"})
            assert "upload_hosts" in r.json()["error"]["message"]
            assert (await c.get("/v1/credentials")).json()["items"] == []
            # The provider's own hosts, and hosts the operator listed, are accepted.
            own = {**hms, "token_url": "https://oauth-login.cloud.huawei.com/oauth2/v3/token"}
            assert (await c.put("/v1/credentials/hms", json=own)).status_code == 200
            listed = {**hms, "base_url": "https://push.corp.example/hms"}
            assert (await c.put("/v1/credentials/hms", json=listed)).status_code == 200
    assert internal.connections == 0


async def test_stored_targets_are_checked_when_sent_to(
    database_url: str, lab: Lab, internal: Internal
) -> None:
    """Endpoints registered while the lab allowance was on, and a token URL from the config, are
    refused once the allowance is off: each target's outcome is ``payload``/``outbound_refused``
    (no retry), nothing connects, and an open port reads exactly like a closed one."""
    lab.reset()
    sub = lab.subscription()
    closed = free_port()
    open_ep = internal.url("/push/open")
    closed_ep = f"https://127.0.0.1:{closed}/push/closed"
    async with running_gateway(gateway_settings(database_url, lab)) as gw:
        for endpoint in (open_ep, closed_ep):
            await register(
                gw,
                provider="webpush",
                token={**sub, "endpoint": endpoint},
                platform="web",
                channels=["inner"],
            )
        await register(
            gw, provider="hms", token="hms-token-0123456789", platform="android", channels=["inner"]
        )
        # With the allowance the listener is reached (it speaks no TLS, so the send itself fails):
        # the count below is a count that could have grown.
        await publish(gw.client, recipients=[{"type": "channel", "channel": "inner"}])
        await wait_for(lambda: internal.connections or None, 30, "the internal service to be reached")
    reached = internal.connections
    assert reached >= 1

    strict = gateway_settings(
        database_url, lab, PUSHGATE_HMS_TOKEN_URL=internal.url("/oauth2/v3/token"), **STRICT
    )
    async with running_gateway(strict) as gw:
        pid = await publish(gw.client, recipients=[{"type": "channel", "channel": "inner"}])
        done = await wait_final(gw.client, pid)
        records = await deliveries(gw.client, pid)
    assert internal.connections == reached, "nothing may connect without the allowance"
    assert len(records) == 3
    for d in records:
        assert (d["status"], d["error_class"], d["error_code"]) == (
            "failed",
            "payload",
            "outbound_refused",
        ), d
        assert d["attempts"] == 1
    web = {d["error_message"] for d in records if d["provider"] == "webpush"}
    assert len(web) == 1, f"an open and a closed port must read alike: {web}"
    [text] = web
    assert str(internal.port) not in text and str(closed) not in text
    assert "devices.allow_loopback_endpoints" in text
    [hms] = [d for d in records if d["provider"] == "hms"]
    assert "token endpoint" in hms["error_message"] and "loopback" in hms["error_message"]
    assert (done["counts"]["failed"], done["counts"]["sent"]) == (3, 0), done


LOOPBACK_ENDPOINTS = [
    "https://127.1/push",
    "https://2130706433/push",
    "https://0x7f.1/push",
    "https://0177.0.0.1/push",
    "https://%31%32%37.0.0.1/push",
    "https://\uff11\uff12\uff17.0.0.1/push",
    "https://127.0.0.1/push",
    "https://[::1]/push",
    "https://[::ffff:127.0.0.1]/push",
    "https://localhost/push",
    "https://169.254.169.254/latest/meta-data",
    "https://2852039166/latest/meta-data",
    "https://[::ffff:a9fe:a9fe]/latest/meta-data",
    "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
    "https://user@push.example.com@127.0.0.1/push",
]


async def test_registration_refuses_loopback_spellings_and_backslash_channel_uris(
    database_url: str, lab: Lab
) -> None:
    sub = lab.subscription()
    async with running_gateway(gateway_settings(database_url, lab, **STRICT)) as gw:
        for endpoint in LOOPBACK_ENDPOINTS:
            r = await gw.client.post(
                "/v1/devices",
                json={"provider": "webpush", "token": {**sub, "endpoint": endpoint}, "platform": "web"},
            )
            assert r.status_code == 400, (endpoint, r.text)
            assert r.json()["error"]["message"].startswith("token: Web Push endpoint: "), r.text
        r = await gw.client.post(
            "/v1/devices",
            json={
                "provider": "wns",
                "token": "https://evil.example\\.notify.windows.com/?token=AwYAAAB",
                "platform": "windows",
            },
        )
        assert r.status_code == 400 and "backslash" in r.json()["error"]["message"], r.text
        assert (await gw.client.get("/v1/devices")).json()["items"] == []
