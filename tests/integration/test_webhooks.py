"""Webhooks (issue 13, acceptance 5) on both databases: an HTTP receiver on loopback (allowed
by the lab flag, as the lab is) gets signed ``publish.finished``, ``delivery.failed`` and
``device.invalid_token`` events; every signature verifies; a receiver that is down for 10 s
gets the events after it is back; an endpoint that keeps failing is disabled and visible."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from support.api import fcm_token, publish, register
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab, free_port
from support.wait import wait_for

from pushgate.domain.webhooks import verify
from pushgate.store.schema import webhook_events


class Receiver:
    """An HTTP endpoint on loopback that records what it is posted; ``down()`` closes its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(body) for _, body in self.got]
        return [e for e in out if event_type is None or e["type"] == event_type]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.up()
    try:
        yield r
    finally:
        await r.down()


@asynccontextmanager
async def hooked_gateway(database_url: str, lab: Lab, **env: str) -> AsyncIterator[Gateway]:
    lab.reset()
    env = {
        "PUSHGATE_WEBHOOKS_RETRY_LADDER": "[0.5, 1]",
        "PUSHGATE_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.2",
        "PUSHGATE_WEBHOOKS_SETTLE_SECONDS": "0.3",
        **env,
    }
    settings = gateway_settings(database_url, lab, **env)
    async with running_gateway(settings) as gw:
        yield gw


async def add_webhook(gw: Gateway, url: str, events: list[str] | None = None) -> tuple[str, str]:
    r = await gw.client.post("/v1/webhooks", json={"url": url, **({"events": events} if events else {})})
    assert r.status_code == 201, r.text
    return r.json()["webhook"]["id"], r.json()["secret"]


async def test_signed_events_reach_the_receiver(database_url: str, lab: Lab) -> None:
    async with hooked_gateway(database_url, lab) as gw, receiver() as rx:
        _, secret = await add_webhook(gw, rx.url)
        good, gone = fcm_token(), fcm_token()
        for t in (good, gone):
            await register(gw, provider="fcm", token=t, platform="android", channels=["hooked"])
        lab.fault(provider="fcm", tokens=[gone], error="unregistered")
        pid = await publish(gw.client, recipients=[{"type": "channel", "channel": "hooked"}])
        final = await gw.wait_done(pid)
        assert (final["counts"]["sent"], final["counts"]["invalid_token"]) == (1, 1)
        await wait_for(lambda: len(rx.events("publish.finished")) == 1, 10, "publish.finished")
        await wait_for(lambda: len(rx.events("device.invalid_token")) == 1, 10, "device.invalid_token")
        finished = rx.events("publish.finished")[0]
        assert finished["data"]["publish_id"] == pid and finished["data"]["status"] == "completed"
        assert finished["data"]["counts"]["sent"] == 1 and finished["data"]["counts"]["invalid_token"] == 1
        (invalid,) = rx.events("device.invalid_token")[0]["data"]["devices"]
        assert invalid["token"] == gone and invalid["provider"] == "fcm"
        (failed,) = rx.events("delivery.failed")[0]["data"]["deliveries"]
        assert failed["status"] == "invalid_token" and failed["device_id"] == invalid["device_id"]
        for headers, body in rx.got:
            assert verify(secret, headers["X-Pushgate-Signature"], body, int(time.time())), headers
            assert headers["X-Pushgate-Event"] == json.loads(body)["type"]
            assert not verify("whsec_other", headers["X-Pushgate-Signature"], body, int(time.time()))
        ids = [json.loads(body)["id"] for _, body in rx.got]
        assert len(ids) == len(set(ids)) == 3  # each event once

        async def settled() -> dict[str, Any] | None:
            # The receiver has the last event before the sender has marked it sent.
            (hook,) = (await gw.client.get("/v1/webhooks")).json()["items"]
            return hook if hook["pending"] == 0 else None

        hook = await wait_for(settled, 10, "the webhook's events marked sent")
        assert hook["failures"] == 0 and "last_success_at" in hook
        assert "secret" not in hook


async def test_a_receiver_down_for_ten_seconds_gets_the_events_after(database_url: str, lab: Lab) -> None:
    async with hooked_gateway(database_url, lab) as gw:
        rx = Receiver()  # not listening yet: connection refused
        hook_id, secret = await add_webhook(gw, rx.url, ["publish.finished"])
        await register(gw, provider="fcm", token=fcm_token(), platform="android", channels=["later"])
        pids = [
            await publish(gw.client, recipients=[{"type": "channel", "channel": "later"}]) for _ in range(3)
        ]
        for pid in pids:
            await gw.wait_done(pid)
        down_since = time.monotonic()
        await wait_for(lambda: time.monotonic() - down_since >= 10, 15, "ten seconds down")
        hook = (await gw.client.get(f"/v1/webhooks/{hook_id}")).json()
        assert hook["pending"] == 3 and hook["failures"] >= 3 and hook["enabled"], hook
        await rx.up()
        try:
            await wait_for(lambda: len(rx.events()) == 3, 10, "the three events after the outage")
            got = sorted(e["data"]["publish_id"] for e in rx.events())
            assert got == sorted(pids), (got, sorted(pids), [e["id"] for e in rx.events()])
            assert all(verify(secret, h["X-Pushgate-Signature"], b, int(time.time())) for h, b in rx.got)
        finally:
            await rx.down()
        await asyncio.sleep(0.5)
        hook = (await gw.client.get(f"/v1/webhooks/{hook_id}")).json()
        assert hook["pending"] == 0 and hook["failures"] == 0


async def test_an_endpoint_that_keeps_failing_is_disabled_then_re_enabled(
    database_url: str, lab: Lab
) -> None:
    async with hooked_gateway(database_url, lab, PUSHGATE_WEBHOOKS_MAX_FAILURES="3") as gw, receiver() as rx:
        rx.status = 500
        hook_id, _ = await add_webhook(gw, rx.url, ["publish.finished"])
        await register(gw, provider="fcm", token=fcm_token(), platform="android", channels=["fails"])
        pid = await publish(gw.client, recipients=[{"type": "channel", "channel": "fails"}])
        await gw.wait_done(pid)

        async def disabled() -> dict[str, Any]:
            return dict((await gw.client.get(f"/v1/webhooks/{hook_id}")).json())

        deadline = time.monotonic() + 10
        while (hook := await disabled())["enabled"]:
            assert time.monotonic() < deadline, hook
            await asyncio.sleep(0.1)
        assert hook["failures"] == 3 and hook["pending"] == 1
        assert "HTTP 500" in hook["disabled_reason"] and hook["disabled_at"]
        tried = len(rx.got)
        await asyncio.sleep(1.5)
        assert len(rx.got) == tried  # disabled: nothing more is tried
        rx.status = 200
        r = await gw.client.patch(f"/v1/webhooks/{hook_id}", json={"enabled": True})
        assert r.status_code == 200 and r.json()["failures"] == 0, r.text
        await wait_for(
            lambda: rx.got and json.loads(rx.got[-1][1])["data"]["publish_id"] == pid, 10, "resent"
        )
        assert len({json.loads(b)["id"] for _, b in rx.got}) == 1  # the same event, retried


async def test_closed_publishes_are_read_page_by_page_from_the_cursor(database_url: str, lab: Lab) -> None:
    """Many publishes closing close together: the scan reads on from its cursor, page by page,
    and writes each publish's event once (more than a page of them, none skipped)."""
    # The workers' own scans wait an hour: only the scan below, five publishes a page, writes.
    async with hooked_gateway(database_url, lab, PUSHGATE_WEBHOOKS_SETTLE_SECONDS="3600") as gw:
        hook_id, _ = await add_webhook(gw, "https://example.com/hooks", ["publish.finished"])
        await register(gw, provider="fcm", token=fcm_token(), platform="android", channels=["many"])
        pids = [
            await publish(gw.client, recipients=[{"type": "channel", "channel": "many"}]) for _ in range(12)
        ]
        for pid in pids:
            await gw.wait_done(pid)
        await asyncio.sleep(0.4)  # past the settle time
        store = gw.app.state.services.webhooks
        store.settle_seconds = 0.3
        assert await store.scan_finished(limit=5) == 12  # three pages
        assert await store.scan_finished(limit=5) == 0  # read on from the cursor: nothing twice
        db = gw.app.state.services.db
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(webhook_events.c.event_id, webhook_events.c.body).where(
                        webhook_events.c.webhook_id == hook_id
                    )
                )
            ).all()
        published = sorted(json.loads(r.body)["data"]["publish_id"] for r in rows)
        assert published == sorted(pids)  # each once


async def test_webhook_requests_are_checked(gateway: Gateway) -> None:
    for body, field in (
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "https://example.com/x", "events": ["publish.started"]}, "events"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "extra": 1}, "extra"),
    ):
        r = await gateway.client.post("/v1/webhooks", json=body)
        assert r.status_code == 400 and field in r.json()["error"]["message"], (body, r.text)
    assert (await gateway.client.get("/v1/webhooks/whk_nope")).status_code == 404
    assert (await gateway.client.patch("/v1/webhooks/whk_nope", json={"enabled": True})).status_code == 404
    assert (await gateway.client.delete("/v1/webhooks/whk_nope")).status_code == 404
    hook_id, _ = await add_webhook(gateway, "https://example.com/hooks")
    rotated = await gateway.client.post(f"/v1/webhooks/{hook_id}/secret")
    assert rotated.status_code == 200 and rotated.json()["secret"].startswith("whsec_")
    assert (await gateway.client.delete(f"/v1/webhooks/{hook_id}")).status_code == 204
    assert (await gateway.client.get("/v1/webhooks")).json()["items"] == []


def test_the_docs_verification_code_accepts_our_signature_and_refuses_others() -> None:
    import pathlib
    import re

    from pushgate.domain.webhooks import signature

    text = (pathlib.Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/webhooks.md", "exec"), scope)
    body = b'{"id":"evt_1","type":"publish.finished"}'
    now = int(time.time())
    header = signature("whsec_s3cret", now, body)
    assert scope["verified"]("whsec_s3cret", header, body)
    assert not scope["verified"]("whsec_other", header, body)
    assert not scope["verified"]("whsec_s3cret", header, body + b" ")
    assert not scope["verified"]("whsec_s3cret", signature("whsec_s3cret", now - 600, body), body)
