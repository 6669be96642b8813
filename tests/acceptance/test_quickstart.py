"""Acceptance test 8: the README quickstart works exactly as written.

``scripts/demo.sh`` extracts the shell block between the quickstart markers of README.md and
runs it with ``bash -euo pipefail``; this test runs that script on free ports in a temporary
directory, so it checks the very text a newcomer pastes.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.sh"
README = ROOT / "README.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_has_one_quickstart_block() -> None:
    text = README.read_text()
    assert text.count("<!-- quickstart:begin -->") == 1
    assert text.count("<!-- quickstart:end -->") == 1
    block = text.split("<!-- quickstart:begin -->", 1)[1].split("<!-- quickstart:end -->", 1)[0]
    assert block.strip().startswith("```sh")
    assert block.strip().endswith("```")
    assert block.count("```") == 2, "the quickstart must be one fenced block"


@pytest.mark.timeout(120)
def test_readme_quickstart_runs(tmp_path: pathlib.Path) -> None:
    if not (ROOT / ".venv" / "bin" / "pushgate").exists():
        pytest.fail("run `make venv` first: the quickstart uses .venv/bin/pushgate")
    gateway_port = _free_port()
    lab_port = _free_port()
    while lab_port == gateway_port:
        lab_port = _free_port()
    env = {
        **os.environ,
        "PUSHGATE_PORT": str(gateway_port),
        "LAB_PORT": str(lab_port),
        "QUICKSTART_DIR": str(tmp_path / "quickstart"),
    }
    # Settings from the caller's environment must not leak into the quickstart's gateway.
    for name in list(env):
        if name.startswith("PUSHGATE_") and name != "PUSHGATE_PORT":
            del env[name]
    proc = subprocess.Popen(
        ["bash", str(DEMO)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # own process group: a timeout can stop the servers too
    )
    try:
        output, _ = proc.communicate(timeout=110)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"quickstart did not finish within 110 s:\n{output}")
    logs = ""
    for name in ("lab.log", "pushgate.log"):
        log = tmp_path / "quickstart" / name
        if log.exists():
            logs += f"\n--- {name}\n{log.read_text()}"
    assert proc.returncode == 0, f"quickstart failed (exit {proc.returncode}):\n{output}{logs}"
    assert "ledger total: 2" in output, output
    assert '"status": "completed"' in output, output
    assert "fcm got" in output and "webpush got" in output, output
    assert "demo: OK" in output, output
