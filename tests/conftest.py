"""Shared fixtures: a real provider lab (subprocess), real PostgreSQL, and a real gateway.

The gateway runs in the test's event loop as a real uvicorn server on a loopback port: tests
reach it over HTTP exactly as a backend would, and its workers deliver to the lab over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from support.lab import free_port, lab_process
from support.postgres import PostgresServer, start_postgres

from pushgate.config import load_settings
from pushgate.runtime import http_config
from pushgate.server import create_app


@dataclass
class Lab:
    url: str
    creds_dir: pathlib.Path

    @property
    def toml(self) -> pathlib.Path:
        return self.creds_dir / "pushgate-lab.toml"

    @property
    def ca_file(self) -> str:
        """The lab CA behind its TLS services: what ``engine.ca_file`` names in the snippet."""
        return str(self.creds_dir / "apns-ca.pem")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def subscription(self) -> dict[str, Any]:
        with self.client() as c:
            r = c.post("/webpush/subscriptions")
            r.raise_for_status()
            return dict(r.json())

    def ledger(self, provider: str | None = None, token: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("provider", provider), ("token", token)) if v}
        with self.client() as c:
            r = c.get("/ledger", params={**params, "limit": 100000})
            r.raise_for_status()
            return dict(r.json())

    def fault(self, **spec: Any) -> None:
        with self.client() as c:
            c.post("/faults", json=spec).raise_for_status()

    def reset(self) -> None:
        with self.client() as c:
            c.delete("/ledger").raise_for_status()
            c.delete("/faults").raise_for_status()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    creds = tmp_path_factory.mktemp("lab")
    with lab_process(creds) as url:
        yield Lab(url=url, creds_dir=creds)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """Every store-touching test runs once per database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'pushgate.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = "t_" + uuid.uuid4().hex[:12]
    url = server.create_database(name)
    yield url
    try:
        server.drop_database(name)
    except Exception:
        pass


APP_KEY = "test-default-key-0123456789"


@dataclass
class Gateway:
    url: str
    key: str
    client: httpx.AsyncClient
    settings: Any
    app: Any

    def as_app(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    async def wait_done(self, publish_id: str, within: float = 60.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            r = await self.client.get(f"/v1/publishes/{publish_id}")
            r.raise_for_status()
            body = dict(r.json())
            if body["status"] in ("completed", "failed", "expired", "cancelled"):
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"publish not done after {within}s: {body}")
            await asyncio.sleep(0.05)

    async def deliveries(self, publish_id: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            q = {**params, "limit": 1000}
            if cursor:
                q["cursor"] = cursor
            r = await self.client.get(f"/v1/publishes/{publish_id}/deliveries", params=q)
            r.raise_for_status()
            body = r.json()
            items += body["items"]
            cursor = body["next_cursor"]
            if not cursor:
                return items


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
    }
    base.update(env)
    return load_settings(lab.toml, env={**os.environ, **base})


@pytest.fixture
async def gateway(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    lab.reset()
    settings = gateway_settings(database_url, lab)
    async with running_gateway(settings) as gw:
        yield gw


class running_gateway:
    def __init__(self, settings: Any, transport: Any = None) -> None:
        self.settings = settings
        self.transport = transport
        self.port = free_port()

    async def __aenter__(self) -> Gateway:
        app = create_app(self.settings, echo=lambda _line: None, transport=self.transport)
        self.server = uvicorn.Server(http_config(app, host="127.0.0.1", port=self.port))
        self.server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("gateway did not start")
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {APP_KEY}"}, timeout=30
        )
        return Gateway(url=url, key=APP_KEY, client=self.client, settings=self.settings, app=app)

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        self.server.should_exit = True
        await self.task
