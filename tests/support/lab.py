"""Start the provider lab as a real subprocess (shared by every test module that needs one)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def lab_process(creds_dir: Path, *extra_args: str) -> Iterator[str]:
    """Run ``python -m pushgate.lab --write-credentials creds_dir`` and yield its base URL once it
    printed its readiness line; terminate it afterwards."""
    port = free_port()
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
