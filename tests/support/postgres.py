"""Throwaway PostgreSQL server for the test session.

``start_postgres(base_dir)`` runs ``initdb`` + ``pg_ctl`` on 127.0.0.1 with a free port and trust
auth, and creates the ``pushgate_test`` database. When running as root the server runs as the
``postgres`` system user (``initdb`` refuses root). Set ``PUSHGATE_TEST_POSTGRES_URL`` to use an
existing server instead.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import glob
import os
import pathlib
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.engine import URL, make_url

ENV_URL = "PUSHGATE_TEST_POSTGRES_URL"
DB_NAME = "pushgate_test"
SUPERUSER = "pushgate"
OS_USER = "postgres"
_HINT = "run `scripts/ensure-postgres.sh` (or set PUSHGATE_TEST_POSTGRES_URL)"


def find_bin_dir() -> pathlib.Path:
    """Directory holding initdb/pg_ctl: highest /usr/lib/postgresql/*/bin, else PATH."""

    def version(p: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", pathlib.Path(p).parent.name))

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK):
            return pathlib.Path(d)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return pathlib.Path(initdb).parent
    raise RuntimeError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {_HINT}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _traversable_by_others(path: pathlib.Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def _ensure_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                OS_USER,
            ],
            check=True,
        )
        return pwd.getpwnam(OS_USER)


def _run_sync(coro_fn: Callable[..., Coroutine[Any, Any, None]], *args: str) -> None:
    """Run an async function to completion in a fresh thread (works inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(coro_fn(*args))).result(timeout=60)


class PostgresServer:
    """A running (or external) PostgreSQL server. ``url`` is a SQLAlchemy asyncpg URL."""

    def __init__(
        self,
        url: str,
        *,
        root_dir: pathlib.Path | None = None,
        bin_dir: pathlib.Path | None = None,
        run_as: str | None = None,
    ) -> None:
        self._url: URL = make_url(url).set(drivername="postgresql+asyncpg")
        self.root_dir = root_dir
        self.bin_dir = bin_dir
        self._run_as = run_as
        self._stopped = False

    @property
    def url(self) -> str:
        return self._url.render_as_string(hide_password=False)

    @property
    def dsn(self) -> str:
        """Plain libpq-style DSN (for ``asyncpg.connect``)."""
        return self._url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def port(self) -> int:
        return self._url.port or 5432

    @property
    def data_dir(self) -> pathlib.Path | None:
        return self.root_dir / "data" if self.root_dir else None

    @property
    def external(self) -> bool:
        return self.root_dir is None

    def url_for(self, name: str) -> str:
        return self._url.set(database=name).render_as_string(hide_password=False)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (dropping any previous one), a copy of ``template`` when given,
        and return its SQLAlchemy URL."""
        copy = f' TEMPLATE "{template}"' if template else ""
        _run_sync(self._admin, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"{copy}')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        _run_sync(self._admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _admin(self, *statements: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            self._url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        )
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    def _cmd(self, *args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(a) for a in args]
        if self._run_as:
            if shutil.which("runuser"):
                argv = ["runuser", "-u", self._run_as, "--", *argv]
            else:
                argv = ["su", self._run_as, "-s", "/bin/sh", "-c", shlex.join(argv)]
        proc = subprocess.run(argv, cwd=self.root_dir, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def log_tail(self, lines: int = 40) -> str:
        log = self.root_dir / "postgres.log" if self.root_dir else None
        if log is None or not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete its directory. Idempotent."""
        if self._stopped or self.root_dir is None:
            return
        self._stopped = True
        if self.bin_dir and self.data_dir and (self.data_dir / "postmaster.pid").exists():
            self._cmd(
                self.bin_dir / "pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w", check=False
            )
        shutil.rmtree(self.root_dir, ignore_errors=True)


def _wait_ready(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on {host}:{port} did not accept connections") from None
            time.sleep(0.1)


def start_postgres(base_dir: pathlib.Path | None = None) -> PostgresServer:
    """Start a throwaway server under ``base_dir`` (or the system temp dir) and create ``pushgate_test``."""
    if env_url := os.environ.get(ENV_URL):
        return PostgresServer(env_url)

    bin_dir = find_bin_dir()
    as_root = os.geteuid() == 0
    parent = base_dir
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
        if as_root and not _traversable_by_others(parent.resolve()):
            parent = None  # e.g. pytest's 0700 tmp dirs: the postgres user could not reach it
    root = pathlib.Path(tempfile.mkdtemp(prefix="pushgate-pg-", dir=parent)).resolve()
    root.chmod(0o755)
    sock_dir = root / "sock"
    sock_dir.mkdir()
    run_as = None
    if as_root:
        user = _ensure_os_user()
        run_as = user.pw_name
        for p in (root, sock_dir):
            os.chown(p, user.pw_uid, user.pw_gid)

    last_error: Exception | None = None
    for _attempt in range(3):
        port = _free_port()
        server = PostgresServer(
            f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{port}/{DB_NAME}",
            root_dir=root,
            bin_dir=bin_dir,
            run_as=run_as,
        )
        atexit.register(server.stop)
        data = root / "data"
        try:
            if not data.exists():
                server._cmd(
                    bin_dir / "initdb",
                    "-D",
                    data,
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                )
                sock = str(sock_dir) if len(str(sock_dir)) < 90 else ""  # unix socket path limit
                with open(data / "postgresql.conf", "a") as conf:
                    conf.write(
                        "\nlisten_addresses = '127.0.0.1'\n"
                        f"unix_socket_directories = '{sock}'\n"
                        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                        "max_connections = 200\n"
                    )
            server._cmd(
                bin_dir / "pg_ctl",
                "start",
                "-D",
                data,
                "-l",
                root / "postgres.log",
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port}",
            )
            _wait_ready("127.0.0.1", port)
            server.create_database(DB_NAME)
            return server
        except Exception as exc:  # port race or startup failure: retry with a new port
            last_error = RuntimeError(f"{exc}\n--- postgres.log ---\n{server.log_tail()}")
            if (data / "postmaster.pid").exists():
                server._cmd(bin_dir / "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", check=False)
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"could not start PostgreSQL from {bin_dir}") from last_error
