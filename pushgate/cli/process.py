"""The commands that run the gateway's processes or prepare their database: ``serve``,
``worker`` and ``migrate``. What they build comes from ``pushgate.runtime``."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Annotated

import typer
from rich.markup import escape

from pushgate.cli.common import ConfigOpt, console, err, run, settings_or_exit, setup_logging, shown_settings
from pushgate.config import ConfigError, Settings
from pushgate.store.secretbox import SecretKeyError


def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8686).")] = None,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="Run dispatch workers in this process.")
    ] = True,
) -> None:
    """Run the HTTP API and the dispatch workers in one process."""
    from pushgate.runtime import GracefulServer, check_credentials, http_config, tune_gc
    from pushgate.server import create_app

    settings = settings_or_exit(config)
    if host:
        settings.server.host = host
    if port:
        settings.server.port = port
    setup_logging(settings.server.log_level)
    if not settings.server.access_log:
        logging.getLogger("pushgate.access").setLevel(logging.WARNING)
    taken = _port_taken(settings.server.host, settings.server.port)
    if taken is not None:  # before the database is touched or a first key printed
        err.print(f"[red]error:[/red] {escape(taken)}", soft_wrap=True)
        raise typer.Exit(2)
    try:
        run(check_credentials(settings))
        run(_check_secret_key(settings))
        # Before anything starts: it refuses compat front-ends whose routes collide.
        app = create_app(settings, run_workers=workers)
    except (ConfigError, SecretKeyError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    console.print(
        f"pushgate {_version()} on http://{settings.server.host}:{settings.server.port} "
        f"(database {shown_settings(settings)['database_url']}, workers {'on' if workers else 'off'})"
    )
    server = GracefulServer(
        http_config(app, host=settings.server.host, port=settings.server.port, server=settings.server)
    )
    tune_gc()
    server.run()


def _port_taken(host: str, port: int) -> str | None:
    """Why ``serve`` could not listen on ``host:port`` (None: it can). Checked first: uvicorn
    finds out only after start-up, once the database was migrated, the first app created and its
    key printed "shown only this once" by a process that then dies."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc} (set [server] host or --host)"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: SO_REUSEADDR passes a port in TIME_WAIT, not one another process listens on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return (
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (another process has it? "
                "stop it, or choose another port with --port or [server] port)"
            )
    return None


def worker(config: ConfigOpt = None) -> None:
    """Run dispatch workers only (no HTTP API), sharing the configured database."""
    from pushgate.runtime import check_credentials, open_runtime, tune_gc
    from pushgate.store.credentials import check_secret_key

    settings = settings_or_exit(config)
    setup_logging(settings.server.log_level)

    async def main() -> None:
        await check_credentials(settings)
        async with open_runtime(settings, workers=True) as rt:
            assert rt.engine is not None
            await check_secret_key(rt.db, settings.secret_key)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await rt.engine.start()
            console.print(f"pushgate worker running ({settings.engine.concurrency} tasks); Ctrl-C to stop")
            await stop.wait()
            console.print("stopping: finishing in-flight jobs")

    try:
        tune_gc()
        run(main())
    except (ConfigError, SecretKeyError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def migrate(config: ConfigOpt = None) -> None:
    """Create or upgrade the database schema to the newest version."""
    from pushgate.runtime import open_database

    settings = settings_or_exit(config)

    async def main() -> None:
        async with open_database(settings):
            pass

    run(main())
    console.print("database is at the newest schema")


async def _check_secret_key(settings: Settings) -> None:
    """Before the server starts: refuse a ``secret_key`` that cannot read the stored credentials
    (the app's lifespan checks again, but a failure there is a traceback, not one line)."""
    from pushgate.store.credentials import check_secret_key
    from pushgate.store.db import Database

    db = Database(settings.database_url)
    try:
        await check_secret_key(db, settings.secret_key)
    except SecretKeyError:
        raise
    except Exception:  # the database cannot be opened: the start itself says why
        pass
    finally:
        await db.dispose()


def _version() -> str:
    from pushgate import __version__

    return __version__
