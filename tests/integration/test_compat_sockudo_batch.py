"""Sockudo ``POST /batch/publish``: validated whole (every check ``POST /v1/publish`` makes)
before anything is admitted, as docs/compat.md says, and bounded like ``POST /v1/publish/batch``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.gateway import MASTER, Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.sockudo import SockudoKey, call, new_key


@pytest.fixture
async def env(database_url: str, lab: Lab) -> AsyncIterator[tuple[Gateway, SockudoKey]]:
    lab.reset()
    async with running_gateway(gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY=MASTER)) as gw:
        yield gw, await new_key(gw.client)


def publish(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"recipients": [{"type": "channel", "channel": "news"}], "payload": {"title": "t"}}
    p.update(over)
    return p


@pytest.mark.parametrize(
    "invalid",
    [
        publish(run_at="not a time"),
        publish(payload={"templateId": "no-such-template"}),
        publish(payload={"title": "t", "icon": "x" * 5000}),
    ],
    ids=["run_at", "template", "icon"],
)
async def test_an_item_refused_at_admission_admits_nothing(
    env: tuple[Gateway, SockudoKey], invalid: dict[str, Any]
) -> None:
    gw, key = env
    r = await call(gw.client, key, "POST", "/batch/publish", [publish(publishId="first"), invalid])
    assert 400 <= r.status_code < 500, r.text[:300]
    assert set(r.json()) == {"error", "code", "status"}
    assert (await gw.client.get("/v1/publishes")).json()["items"] == []


async def test_a_batch_is_at_most_1000_publishes(env: tuple[Gateway, SockudoKey]) -> None:
    gw, key = env
    r = await call(gw.client, key, "POST", "/batch/publish", [publish()] * 1001)
    assert r.status_code == 400 and r.json()["code"] == "invalid_input", r.text[:300]
    assert (await gw.client.get("/v1/publishes")).json()["items"] == []
