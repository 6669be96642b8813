"""The ``pushgate`` command line, run as a real program."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.api import fcm_token, register
from support.gateway import Gateway
from support.lab import Lab, free_port
from support.process import PUSHGATE
from support.wait import wait_for_sync

from pushgate.domain.render import b64url_decode


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("PUSHGATE_CONFIG", None)
    return subprocess.run(
        [PUSHGATE, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60
    )


def ready(base: str) -> dict[str, object] | None:
    """``/readyz``'s body when it answers 200 (urllib raises on anything else)."""
    with urllib.request.urlopen(f"{base}/readyz", timeout=1) as r:
        return dict(json.loads(r.read())) if r.status == 200 else None


def test_help_lists_commands() -> None:
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("serve", "worker", "migrate", "apps", "send", "lab", "keys", "config"):
        assert cmd in out.stdout
    assert "--wait" in run("send", "--help").stdout


def test_keys_vapid_prints_a_matching_pair_as_toml_on_a_narrow_terminal() -> None:
    # A narrow terminal: the output must still be the TOML section it says it is (Rich once read
    # "[webpush]" as markup and wrapped the public key).
    out = run("keys", "vapid", env={"COLUMNS": "40"})
    assert out.returncode == 0
    section = tomllib.loads(out.stdout)["webpush"]
    assert section["vapid_subject"] == "mailto:you@example.com"
    private, public = section["vapid_private_key"], section["vapid_public_key"]
    key = ec.derive_private_key(int.from_bytes(b64url_decode(private), "big"), ec.SECP256R1())
    derived = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert derived == b64url_decode(public)


def test_version() -> None:
    from pushgate import __version__

    out = run("--version")
    assert (out.returncode, out.stdout) == (0, f"pushgate {__version__}\n")


def test_config_show_masks_secrets_and_bad_config_fails(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('[webpush]\nvapid_private_key = "${PK}"\nvapid_subject = "mailto:x@example.com"\n')
    out = run("config", "show", "--config", str(cfg), env={"PK": "very-secret-private-key-123"})
    assert out.returncode == 0, out.stderr
    assert "very-secret-private-key-123" not in out.stdout
    assert "mailto:x@example.com" in out.stdout and "****" in out.stdout
    cfg.write_text("[server]\nport = 'x'\n")
    bad = run("config", "show", "--config", str(cfg))
    assert bad.returncode == 2
    assert "server.port" in bad.stderr


def test_apps_create_and_list(tmp_path: Path) -> None:
    env = {"PUSHGATE_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"}
    assert run("migrate", env=env).returncode == 0
    created = run("apps", "create", "shop", "--key", "shop-key-0123456789abcdef", env=env)
    assert created.returncode == 0, created.stderr
    assert "shop-key-0123456789abcdef" in created.stdout
    again = run("apps", "create", "shop", env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    # A key a person chooses has a floor (one character used to be accepted); nothing is created.
    short = run("apps", "create", "tiny", "--key", "k" * 23, env=env)
    assert short.returncode == 2 and "at least 24 characters" in short.stderr, short.stderr
    listed = run("apps", "list", env=env)
    assert "shop" in listed.stdout and "app_" in listed.stdout and "tiny" not in listed.stdout


async def test_send_wait_shows_counts(gateway: Gateway, lab: Lab) -> None:
    devs = [
        await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["cli"])
        for _ in range(3)
    ]
    proc = await asyncio.create_subprocess_exec(
        PUSHGATE, "send", "--channel", "cli", "--title", "From the CLI", "--body", "hi", "--wait",
        "--url", gateway.url, "--key", gateway.key,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    pub_id = text.split()[0]
    assert pub_id.startswith("pub_")
    assert "completed" in text
    status = (await gateway.client.get(f"/v1/publishes/{pub_id}")).json()
    assert status["counts"]["sent"] == 3
    assert {i["token"] for i in lab.ledger("fcm")["items"]} == {d["token"] for d in devs}
    bad = await asyncio.create_subprocess_exec(
        PUSHGATE, "send", "--channel", "cli", "--title", "x", "--url", gateway.url, "--key", "wrong",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, berr = await bad.communicate()
    assert bad.returncode == 1 and "401" in berr.decode()


def test_serve_first_start_prints_key_once_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PUSHGATE_DATABASE_URL": f"sqlite:///{tmp_path}/s.db", "COLUMNS": "200"}
    env.pop("PUSHGATE_CONFIG", None)
    env.pop("PUSHGATE_DEFAULT_APP_KEY", None)

    def start() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [PUSHGATE, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for_sync(
            lambda: ready(f"http://127.0.0.1:{port}"), 30, "/readyz", interval=0.1, ignore=(OSError,)
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        return proc, out

    first, out1 = start()
    assert first.returncode == 0, out1
    key = re.search(r"^\s+(pgk_\S+)\s*$", out1, re.M)
    assert key, out1
    assert "No provider has credentials" in out1 and "pushgate lab --write-credentials" in out1
    second, out2 = start()
    assert second.returncode == 0
    assert key.group(1) not in out2 and "Created app" not in out2


def test_api_node_and_separate_worker_process_share_the_database(tmp_path: Path, lab: Lab) -> None:
    """The distributed shape: `serve --no-workers` admits, a `pushgate worker` process delivers."""

    lab.reset()
    port = free_port()
    key = "shared-key-0123456789abcd"
    env = {
        **os.environ,
        "PUSHGATE_DATABASE_URL": f"sqlite:///{tmp_path}/shared.db",
        "PUSHGATE_DEFAULT_APP_KEY": key,
        "PUSHGATE_ENGINE_POLL_INTERVAL": "0.1",
    }
    env.pop("PUSHGATE_CONFIG", None)
    api = subprocess.Popen(
        [PUSHGATE, "serve", "--no-workers", "--port", str(port), "--config", str(lab.toml)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    worker = None
    try:
        base = f"http://127.0.0.1:{port}"
        readiness = wait_for_sync(lambda: ready(base), 30, "/readyz", interval=0.1, ignore=(OSError,))
        assert readiness["checks"] == {"database": "ok"}  # no workers in this process

        def call(method: str, path: str, body: object) -> dict[str, object]:
            req = urllib.request.Request(
                base + path, data=json.dumps(body).encode() if body is not None else None, method=method,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(req, timeout=10) as r:
                return dict(json.loads(r.read()))

        token = fcm_token()
        dev = call("POST", "/v1/devices", {"provider": "fcm", "token": token, "platform": "android"})[
            "device"
        ]
        pub = call("POST", "/v1/publish", {"recipients": [{"type": "device", "device_id": dev["id"]}],  # type: ignore[index]
                                           "notification": {"title": "via worker"}})  # fmt: skip
        time.sleep(0.5)
        # Nobody sends here: planned at admission (engine.plan_at_admission), never sent.
        waiting = call("GET", f"/v1/publishes/{pub['publish_id']}", None)
        counts = waiting["counts"]
        assert isinstance(counts, dict) and (waiting["status"], counts["planned"], counts["sent"]) == (
            "dispatching", 1, 0
        )  # fmt: skip
        worker = subprocess.Popen(
            [PUSHGATE, "worker", "--config", str(lab.toml)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

        def completed() -> dict[str, object] | None:
            status = call("GET", f"/v1/publishes/{pub['publish_id']}", None)
            return status if status["status"] == "completed" else None

        status = wait_for_sync(completed, 30, "the worker to complete the publish", interval=0.1)
        assert status["status"] == "completed", status
        assert lab.ledger("fcm", token)["total"] == 1
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, out
        assert "stopping" in out
    finally:
        for p in (api, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


async def test_creds_commands(database_url: str, lab: Lab) -> None:
    from support.gateway import gateway_settings, running_gateway

    settings = gateway_settings(database_url, lab, PUSHGATE_SECRET_KEY="cli-master-key-0123456789")
    async with running_gateway(settings) as gw:
        _, key = await gw.app.state.services.apps.create("cli-creds")

        async def cli(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                PUSHGATE, "creds", *args, "--url", gw.url, "--key", key,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "COLUMNS": "200"},
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out.decode(), err.decode()

        sa_file = lab.creds_dir / "fcm-service-account.json"
        code, out, err = await cli("set", "fcm", "--file", str(sa_file))
        assert code == 0, err
        assert "version 1" in out
        code, out, _ = await cli("list")
        assert code == 0 and "fcm" in out and "api" in out
        assert "PRIVATE" not in out
        code, out, _ = await cli("delete", "fcm")
        assert code == 0 and "deleted" in out
        code, _, err = await cli("delete", "fcm")
        assert code == 1 and "404" in err


def test_serve_on_a_port_in_use_says_so_before_touching_anything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "pushgate.db"
        out = run("serve", "--port", str(port), env={"PUSHGATE_DATABASE_URL": f"sqlite+aiosqlite:///{db}"})
    assert out.returncode == 2
    assert out.stdout == ""  # no banner, and no first key "shown only this once"
    (line,) = out.stderr.splitlines()
    assert f"127.0.0.1:{port}" in line and "--port" in line, line
    assert not db.exists()  # nothing migrated, no app created
