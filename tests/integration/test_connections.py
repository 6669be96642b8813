"""Slow, silent, oversized and numerous connections, against a real server: each is cut off
or capped, and ``/healthz`` keeps answering (``[server]`` header_timeout, body_timeout,
keep_alive_timeout, max_header_bytes, max_connections; ``api/connections.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.gateway import APP_KEY, Gateway, gateway_settings, running_gateway
from support.lab import Lab, free_port
from support.process import PUSHGATE
from support.wait import wait_for_sync


@pytest.fixture
async def strict_gateway(tmp_path: Path, lab: Lab) -> AsyncIterator[Gateway]:
    """A gateway with one-second connection timeouts and a 4 KiB header cap."""
    settings = gateway_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        lab,
        PUSHGATE_SERVER_HEADER_TIMEOUT="1",
        PUSHGATE_SERVER_BODY_TIMEOUT="1",
        PUSHGATE_SERVER_KEEP_ALIVE_TIMEOUT="1",
        PUSHGATE_SERVER_MAX_HEADER_BYTES="4096",
    )
    async with running_gateway(settings) as gw:
        yield gw


async def _connect(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(gw.url.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


async def _answer(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``within`` s)."""
    return await asyncio.wait_for(reader.read(), within)


async def test_a_body_shorter_than_its_content_length_is_cut_off(strict_gateway: Gateway) -> None:
    """Reproduced: ``Content-Length: 5`` with 2 bytes sent held the request for 70 s."""
    reader, writer = await _connect(strict_gateway)
    writer.write(
        b"POST /v1/devices HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + APP_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{}"
    )
    await writer.drain()
    start = time.monotonic()
    answer = await _answer(reader, 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert 0.9 < time.monotonic() - start < 5
    writer.close()


async def test_headers_that_never_finish_are_cut_off(strict_gateway: Gateway) -> None:
    reader, writer = await _connect(strict_gateway)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # no blank line: headers never end
    await writer.drain()
    answer = await _answer(reader, 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    writer.close()


async def test_a_silent_connection_is_closed_after_the_header_timeout(strict_gateway: Gateway) -> None:
    reader, writer = await _connect(strict_gateway)
    start = time.monotonic()
    assert await _answer(reader, 10) == b""  # closed without a word: nothing was asked
    assert 0.9 < time.monotonic() - start < 5
    writer.close()


async def test_a_dribbled_request_is_cut_off_even_though_bytes_keep_coming(strict_gateway: Gateway) -> None:
    """Slowloris: one byte at a time resets no timer; the deadline is the request's whole head."""
    reader, writer = await _connect(strict_gateway)
    start = time.monotonic()
    first = asyncio.create_task(reader.read(4096))  # the server's first words, whenever they come
    with contextlib.suppress(ConnectionError):
        for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: yes\r\n\r\n":
            if first.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
    answer = await asyncio.wait_for(first, 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - start < 3
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(strict_gateway: Gateway) -> None:
    reader, writer = await _connect(strict_gateway)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    await writer.drain()
    answer = await _answer(reader, 10)  # the answer, then the close after keep_alive_timeout
    assert answer.startswith(b"HTTP/1.1 200"), answer
    writer.close()


async def test_oversized_headers_are_answered_431(strict_gateway: Gateway) -> None:
    reader, writer = await _connect(strict_gateway)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    await writer.drain()
    answer = await _answer(reader, 10)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "headers_too_large"
    writer.close()
    async with strict_gateway.as_app(APP_KEY) as client:  # headers under the cap still pass
        r = await client.get("/healthz", headers={"X-Fine": "a" * 3000})
        assert r.status_code == 200


def _ready(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
        return r.status == 200


def test_many_idle_connections_do_not_stop_healthz(tmp_path: Path) -> None:
    """Reproduced: 20,000 idle connections exhausted the descriptors and ``/healthz`` was refused.
    Here the server may open 256 descriptors and 400 idle connections are made: the cap derived
    from that limit (192) closes the longest-idle ones, so ``/healthz`` still answers."""
    port = free_port()
    env = {**os.environ, "PUSHGATE_DATABASE_URL": f"sqlite:///{tmp_path}/fd.db", "COLUMNS": "200"}
    env.pop("PUSHGATE_CONFIG", None)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    proc = subprocess.Popen(
        [PUSHGATE, "serve", "--no-workers", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
    )
    idle: list[socket.socket] = []
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_sync(lambda: _ready(base), 30, "/healthz", interval=0.1, ignore=(OSError,))
        for _ in range(400):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)  # let the server accept them all
        start = time.monotonic()
        assert _ready(base)
        assert time.monotonic() - start < 2
        closed = 0
        for s in idle:
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                closed += s.recv(1) == b""
        assert closed >= 400 - 192, closed  # the server held no more than its cap
    finally:
        for s in idle:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


async def test_a_new_connection_gets_503_when_every_connection_is_busy(tmp_path: Path, lab: Lab) -> None:
    """At the cap with no idle connection to close, the newcomer is told so and closed; once
    the busy ones end, connections are accepted again."""
    settings = gateway_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}",
        lab,
        PUSHGATE_SERVER_MAX_CONNECTIONS="3",
        PUSHGATE_SERVER_BODY_TIMEOUT="2",
    )
    async with running_gateway(settings) as gw:
        busy = []
        for _ in range(3):  # each waits for a body that never comes: busy, not idle
            reader, writer = await _connect(gw)
            writer.write(
                b"POST /v1/devices HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + APP_KEY.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{}"
            )
            await writer.drain()
            busy.append((reader, writer))
        await asyncio.sleep(0.3)
        reader, writer = await _connect(gw)
        answer = await _answer(reader, 5)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"retry-after: 1" in answer.lower()
        writer.close()
        for reader, writer in busy:  # the body timeout ends them
            assert (await _answer(reader, 10)).startswith(b"HTTP/1.1 408")
            writer.close()
        await asyncio.sleep(0.2)
        async with gw.as_app(APP_KEY) as client:
            assert (await client.get("/healthz")).status_code == 200
