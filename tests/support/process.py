"""Running pushgate as a real program, as an operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from support.api import wait_final
from support.lab import Lab
from support.wait import wait_for

#: The installed ``pushgate`` console script of the running interpreter's environment.
PUSHGATE = shutil.which("pushgate", path=str(Path(sys.executable).parent)) or "pushgate"

#: The default app key of the processes these helpers start.
KEY = "crash-safety-key-0123456789"


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PUSHGATE_DATABASE_URL": database_url,
        "PUSHGATE_DEFAULT_APP_KEY": KEY,
        "PUSHGATE_ENGINE_POLL_INTERVAL": "0.1",
        "PUSHGATE_SERVER_ACCESS_LOG": "false",
        **extra,
    }
    env.pop("PUSHGATE_CONFIG", None)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a pushgate process whose output goes to ``log`` (a pipe nobody reads could fill up)."""
    with log.open("ab") as out:
        return subprocess.Popen([PUSHGATE, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def tail(log: Path) -> str:
    return log.read_text()[-4000:]


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def alive(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Fail at once (not at a wait's deadline) when the pushgate process has died."""
    if proc.poll() is not None:
        raise AssertionError(f"pushgate exited with {proc.returncode}:\n{tail(log)}")


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes], log: Path) -> None:
    async def healthy() -> bool:
        alive(proc, log)
        return (await client.get("/healthz", timeout=1)).status_code == 200

    await wait_for(healthy, 30, lambda: f"pushgate to be ready:\n{tail(log)}", ignore=(httpx.TransportError,))


async def wait_completed(client: httpx.AsyncClient, publish_id: str, within: float) -> dict[str, Any]:
    """The publish's final status; a gateway restarting in between is "not yet"."""
    return await wait_final(client, publish_id, within, interval=0.1, ignore=(httpx.TransportError,))


def ledger_counts(lab: Lab) -> Counter[str]:
    return Counter(item["token"] for item in lab.ledger("fcm")["items"])


def process_client(port: int) -> httpx.AsyncClient:
    """A client of the pushgate process listening on ``port``, with the default app's key."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
