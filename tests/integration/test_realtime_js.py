"""The official JavaScript client against the realtime gateway (issue 13): the npm package
``socket.io-client`` run by node (``make test`` installs it into tests/js with ``npm ci``)
connects with a connection token, starts on long-polling and upgrades to WebSocket, counts in
presence, and hears a refused token's reason."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.gateway import Gateway

JS = Path(__file__).parents[1] / "js"


def node_client() -> list[str]:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("node or tests/js/node_modules missing: run `make test` (it installs both)")
    return [node, str(JS / "client.mjs")]


async def line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert raw, "the node client ended without a word"
    return dict(json.loads(raw))


async def presence(gw: Gateway, user: str) -> int:
    r = await gw.client.get(f"/v1/realtime/users/{user}")
    return int(r.json()["sessions"])


@pytest.mark.parametrize("transports", ["polling", "polling,websocket"])
async def test_the_npm_client_connects_and_counts(gateway: Gateway, transports: str) -> None:
    r = await gateway.client.post("/v1/realtime/tokens", json={"user": "js-user"})
    proc = await asyncio.create_subprocess_exec(
        *node_client(),
        gateway.url,
        r.json()["token"],
        transports,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        first = await line(proc)
        assert first["event"] == "connected", first
        if transports == "polling":
            assert first["transport"] == "polling"
        elif first["transport"] == "polling":  # the default: polling, upgraded to WebSocket
            assert await line(proc) == {"event": "transport", "transport": "websocket"}
        else:  # the upgrade finished before the namespace's connect arrived
            assert first["transport"] == "websocket"
        assert await presence(gateway, "js-user") == 1
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    for _ in range(100):
        if await presence(gateway, "js-user") == 0:
            break
        await asyncio.sleep(0.05)
    assert await presence(gateway, "js-user") == 0


async def test_the_npm_client_hears_why_its_token_was_refused(gateway: Gateway) -> None:
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(*node_client(), gateway.url, "bad", stdin=pipe, stdout=pipe)
    assert await line(proc) == {"event": "connect_error", "message": "token: not a JWT"}
    assert await asyncio.wait_for(proc.wait(), 10) == 2
