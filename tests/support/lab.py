"""The provider lab: started as a real subprocess, and driven through its control routes.

``Lab`` wraps the control plane every gateway test uses: a Web Push subscription, the ledger of
what each simulated provider received, and faults (an error, a latency or an outage for some
tokens, see README "The provider lab").
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pushgate.domain.urls import Allowance
from pushgate.providers.outbound import OutboundPolicy

REPO = Path(__file__).resolve().parents[2]


def lab_outbound() -> OutboundPolicy:
    """What a transport a test builds itself may connect to: the lab on loopback (plain http
    included), as ``devices.allow_loopback_endpoints`` in the lab's config allows a gateway."""
    return OutboundPolicy(Allowance(lab=True))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def lab_process(creds_dir: Path, *extra_args: str) -> Iterator[str]:
    """Run ``python -m pushgate.lab --write-credentials creds_dir`` and yield its base URL once it
    printed its readiness line; terminate it afterwards.

    With ``PUSHGATE_TEST_LAB_IN_PROCESS=1`` (set by ``make mutation``) the same entry point runs in
    a thread of the test process instead: mutmut only sees, and only mutates, code that runs in
    the process it forked, and the lab's checks are among the code it mutates."""
    port = free_port()
    if os.environ.get("PUSHGATE_TEST_LAB_IN_PROCESS") == "1":
        yield _lab_in_thread(creds_dir, port, extra_args)
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushgate.lab", "--host", "127.0.0.1", "--port", str(port),
         "--write-credentials", str(creds_dir), *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != f"pushgate lab listening on http://127.0.0.1:{port}":
            proc.kill()
            raise RuntimeError(f"lab did not start: {line}\n{proc.stdout.read()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Lab:
    url: str
    creds_dir: Path

    @property
    def toml(self) -> Path:
        return self.creds_dir / "pushgate-lab.toml"

    @property
    def ca_file(self) -> str:
        """The lab CA behind its TLS services: what ``engine.ca_file`` names in the snippet."""
        return str(self.creds_dir / "apns-ca.pem")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def subscription(self, listener: str = "h2") -> dict[str, Any]:
        """A fresh Web Push subscription; ``listener="http1"`` names the lab's second push service
        origin (HTTP/1.1 only, another port)."""
        with self.client() as c:
            r = c.post("/webpush/subscriptions", json={"listener": listener})
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

    def faults(self) -> list[dict[str, Any]]:
        """The installed faults with their counters (``hits``, ``remaining``, ``written``)."""
        with self.client() as c:
            r = c.get("/faults")
            r.raise_for_status()
            return list(r.json()["items"])

    def reset(self) -> None:
        with self.client() as c:
            c.delete("/ledger").raise_for_status()
            c.delete("/faults").raise_for_status()


def service_account(lab: Lab) -> dict[str, Any]:
    """The FCM service account the lab wrote (its key is one the lab's OAuth endpoint accepts)."""
    return dict(json.loads((lab.creds_dir / "fcm-service-account.json").read_text()))


def _lab_in_thread(creds_dir: Path, port: int, extra_args: tuple[str, ...]) -> str:
    """Start ``pushgate.lab``'s ``main`` in a daemon thread and return its URL once it accepts
    connections. It is never stopped: it ends with the (short-lived, forked) test process."""
    from pushgate.lab.__main__ import main

    argv = ["--host", "127.0.0.1", "--port", str(port), "--write-credentials", str(creds_dir), *extra_args]
    thread = threading.Thread(target=main, args=(argv,), name=f"pushgate-lab-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("lab did not start (in-process)")
        with socket.socket() as s:
            # The APNs listeners are bound before this socket: an early connection to them
            # waits in their backlog until they serve.
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return f"http://127.0.0.1:{port}"
        time.sleep(0.05)
    raise RuntimeError("lab did not start within 30 s (in-process)")
