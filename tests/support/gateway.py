"""A real gateway inside the test's event loop: uvicorn on a loopback port, reached over HTTP.

Tests talk to it exactly as a backend would, and its workers deliver to the provider lab over
HTTP, so a gateway test covers admission, the queue, the engine and the providers together.
``gateway_settings`` gives test-sized waits (short retry ladder and cooldowns) so tests that
inject provider errors finish in seconds.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from pushgate.config import load_settings
from pushgate.runtime import http_config
from pushgate.server import create_app
from support.api import authorised_client, deliveries, wait_final
from support.lab import Lab, free_port

APP_KEY = "test-default-key-0123456789"
#: A ``PUSHGATE_SECRET_KEY`` for tests that upload credentials through the API.
MASTER = "test-master-key-0123456789abcdef"


@dataclass
class Gateway:
    url: str
    key: str
    client: httpx.AsyncClient
    settings: Any
    app: Any

    def as_app(self, key: str) -> httpx.AsyncClient:
        return authorised_client(self.url, key)

    async def wait_done(self, publish_id: str, within: float = 60.0) -> dict[str, Any]:
        return await wait_final(self.client, publish_id, within)

    async def deliveries(self, publish_id: str, **params: Any) -> list[dict[str, Any]]:
        return await deliveries(self.client, publish_id, **params)


def gateway_settings(database_url: str, lab: Lab, **env: str) -> Any:
    base = {
        "PUSHGATE_DATABASE_URL": database_url,
        "PUSHGATE_DEFAULT_APP_KEY": APP_KEY,
        "PUSHGATE_ENGINE_POLL_INTERVAL": "0.1",
        # Test-sized waits: a short retry ladder and quarantine cooldowns, so tests that inject
        # provider errors finish in seconds; no invalid-token throttle unless a test asks for it.
        "PUSHGATE_RETRY_LADDER": "[0.2, 0.4, 0.8, 1.6]",
        "PUSHGATE_QUARANTINE_COOLDOWN": "0.5",
        "PUSHGATE_QUARANTINE_MAX_COOLDOWN": "2",
        "PUSHGATE_QUARANTINE_CREDENTIAL_COOLDOWN": "0.5",
        "PUSHGATE_HEALTH_THROTTLE_PER_SECOND": "0",
        "PUSHGATE_SERVER_ACCESS_LOG": "false",
        # Realtime heartbeats in test time: a long-polling client's disconnect waits them out.
        "PUSHGATE_REALTIME_PING_INTERVAL_SECONDS": "1",
        "PUSHGATE_REALTIME_PING_TIMEOUT_SECONDS": "1",
    }
    base.update(env)
    return load_settings(lab.toml, env={**os.environ, **base})


class running_gateway:
    def __init__(self, settings: Any, transport: Any = None) -> None:
        self.settings = settings
        self.transport = transport
        self.port = free_port()

    async def __aenter__(self) -> Gateway:
        app = create_app(self.settings, echo=lambda _line: None, transport=self.transport)
        self.server = uvicorn.Server(
            http_config(app, host="127.0.0.1", port=self.port, server=self.settings.server)
        )
        self.server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("gateway did not start")
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{self.port}"
        self.client = authorised_client(url, APP_KEY)
        return Gateway(url=url, key=APP_KEY, client=self.client, settings=self.settings, app=app)

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        self.server.should_exit = True
        await self.task
