"""The ``pushgate`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pushgate.bench.cli import bench_cli
from pushgate.config import ConfigError, Settings, load_settings, masked

app = typer.Typer(
    help="pushgate: a self-hosted push notification gateway.\n\n"
    "Start with `pushgate serve`; try it without real provider accounts with `pushgate lab`.",
    no_args_is_help=True,
    add_completion=False,
)
apps_cli = typer.Typer(help="Create and list apps (tenants) and their API keys.", no_args_is_help=True)
keys_cli = typer.Typer(help="Generate provider keys.", no_args_is_help=True)
config_cli = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
creds_cli = typer.Typer(
    help="Manage provider credentials of an app through a running gateway (needs PUSHGATE_SECRET_KEY there).",
    no_args_is_help=True,
)
app.add_typer(apps_cli, name="apps")
app.add_typer(keys_cli, name="keys")
app.add_typer(config_cli, name="config")
app.add_typer(creds_cli, name="creds")
app.add_typer(bench_cli, name="bench")

UrlOpt = Annotated[str, typer.Option(envvar="PUSHGATE_URL", help="Gateway URL ($PUSHGATE_URL).")]
KeyOpt = Annotated[str, typer.Option(envvar="PUSHGATE_KEY", help="App API key ($PUSHGATE_KEY).")]

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $PUSHGATE_CONFIG, else built-in defaults)."
    ),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)


async def _check_credentials(settings: Settings) -> None:
    """Build every configured provider once so bad credentials stop startup with the key's name."""
    from pushgate.engine.providers import provider_classes
    from pushgate.providers.http import create_transport

    transport = create_transport(timeout=settings.engine.http_timeout, ca_file=settings.engine.ca_file)
    classes = provider_classes()
    try:
        sections: list[tuple[str, str, dict[str, Any]]] = [
            ("", name, sec)
            for name, sec in settings.provider_settings("", "default").items()
            if name in classes
        ]
        for app_name in settings.apps:
            sections += [
                (f"apps.{app_name}.", name, sec)
                for name, sec in settings.provider_settings("", app_name).items()
                if name in classes
            ]
        for prefix, name, sec in sections:
            try:
                inst = await classes[name].create(sec, transport)
                await inst.aclose()
            except Exception as exc:
                raise ConfigError(f"invalid config: {prefix}{exc}") from None
    finally:
        await transport.aclose()


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8686).")] = None,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="Run dispatch workers in this process.")
    ] = True,
) -> None:
    """Run the HTTP API and the dispatch workers in one process."""
    import uvicorn

    from pushgate.server import create_app

    settings = _settings(config)
    if host:
        settings.server.host = host
    if port:
        settings.server.port = port
    _logging(settings.server.log_level)
    if not settings.server.access_log:
        logging.getLogger("pushgate.access").setLevel(logging.WARNING)
    try:
        _run(_check_credentials(settings))
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(
        f"pushgate {_version()} on http://{settings.server.host}:{settings.server.port} "
        f"(database {masked(settings)['database_url']}, workers {'on' if workers else 'off'})"
    )
    config_ = uvicorn.Config(
        create_app(settings, run_workers=workers),
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=15,
    )
    _tune_gc()
    _graceful_server_class()(config_).run()


def _tune_gc() -> None:
    """Fewer cyclic-GC passes for the long-running processes.

    Dispatch allocates many short-lived objects (rows, requests, results); with the default
    threshold (700) generation-0 collections ran thousands of times per second. Measured on the
    e2e benchmark: about a tenth less CPU per push (docs/performance.md). Objects alive after
    start-up (modules, settings, the app) are frozen out of every later collection.
    """
    import gc

    gc.freeze()
    # Generation 2 keeps its default (10): a higher one let cycles that outlive one young
    # collection (failed sends' tracebacks, tasks on timeouts) pile up for tens of minutes.
    gc.set_threshold(50_000, 50, 10)


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process would die
        "by signal" even though it drained cleanly; pushgate exits 0 after a clean drain instead."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return GracefulServer


@app.command()
def worker(config: ConfigOpt = None) -> None:
    """Run dispatch workers only (no HTTP API), sharing the configured database."""
    from pushgate.engine.worker import Engine
    from pushgate.providers.http import create_transport
    from pushgate.store.db import Database

    settings = _settings(config)
    _logging(settings.server.log_level)

    async def main() -> None:
        await _check_credentials(settings)
        db = Database(settings.database_url)
        if settings.server.auto_migrate:
            await db.migrate()
        transport = create_transport(timeout=settings.engine.http_timeout, ca_file=settings.engine.ca_file)
        engine = Engine(settings, db, transport)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await engine.start()
        console.print(f"pushgate worker running ({settings.engine.concurrency} tasks); Ctrl-C to stop")
        await stop.wait()
        console.print("stopping: finishing in-flight jobs")
        await engine.stop()
        await transport.aclose()
        await db.dispose()

    try:
        _tune_gc()
        _run(main())
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def migrate(config: ConfigOpt = None) -> None:
    """Create or upgrade the database schema to the newest version."""
    from pushgate.store.db import Database

    settings = _settings(config)

    async def main() -> None:
        db = Database(settings.database_url)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    _run(main())
    console.print("database is at the newest schema")


@apps_cli.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="App name (unique).")],
    key: Annotated[str | None, typer.Option(help="Use this API key instead of a random one.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create an app and print its API key (shown only once)."""
    from pushgate.store.apps import AppStore
    from pushgate.store.db import Database

    settings = _settings(config)

    async def main() -> tuple[str, str] | None:
        db = Database(settings.database_url)
        try:
            await db.migrate()
            store = AppStore(db)
            if await store.get_by_name(name):
                return None
            created, plain = await store.create(name, key=key)
            return created.id, plain
        finally:
            await db.dispose()

    result = _run(main())
    if result is None:
        err.print(f"[red]error:[/red] an app named {name!r} already exists")
        raise typer.Exit(1)
    console.print(f"app {name!r} created: id {result[0]}")
    console.print(f"API key (shown only this once): [bold]{result[1]}[/bold]")


@apps_cli.command("list")
def apps_list(config: ConfigOpt = None) -> None:
    """List apps."""
    from pushgate.domain.timefmt import rfc3339
    from pushgate.store.apps import AppStore
    from pushgate.store.db import Database

    settings = _settings(config)

    async def main() -> list[Any]:
        db = Database(settings.database_url)
        try:
            await db.migrate()
            return await AppStore(db).list_apps()
        finally:
            await db.dispose()

    table = Table("id", "name", "keys", "created")
    for a, n in _run(main()):
        table.add_row(a.id, a.name, str(n), rfc3339(a.created_at) or "")
    console.print(table)


def _api(url: str, key: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())["error"]["message"]
        except Exception:
            detail = str(exc)
        err.print(f"[red]error:[/red] {exc.code}: {detail}")
        raise typer.Exit(1) from None
    except urllib.error.URLError as exc:
        err.print(
            f"[red]error:[/red] cannot reach pushgate at {url}: {exc.reason} (is `pushgate serve` running?)"
        )
        raise typer.Exit(1) from None


@app.command()
def send(
    title: Annotated[str, typer.Option(help="Notification title.")],
    body: Annotated[str, typer.Option(help="Notification body.")] = "",
    channel: Annotated[list[str] | None, typer.Option(help="Channel recipient (repeatable).")] = None,
    user: Annotated[list[str] | None, typer.Option(help="User recipient (repeatable).")] = None,
    device: Annotated[list[str] | None, typer.Option(help="Device id recipient (repeatable).")] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the publish with a progress bar until it is done.")
    ] = False,
    url: Annotated[str, typer.Option(envvar="PUSHGATE_URL", help="Gateway URL.")] = "http://127.0.0.1:8686",
    key: Annotated[str, typer.Option(envvar="PUSHGATE_KEY", help="App API key ($PUSHGATE_KEY).")] = "",
) -> None:
    """Publish a notification through a running gateway and print the publish id."""
    if not key:
        err.print("[red]error:[/red] give the app key with --key or PUSHGATE_KEY")
        raise typer.Exit(2)
    recipients = (
        [{"type": "channel", "channel": c} for c in channel or []]
        + [{"type": "user", "user": u} for u in user or []]
        + [{"type": "device", "device_id": d} for d in device or []]
    )
    if not recipients:
        err.print("[red]error:[/red] give at least one of --channel, --user, --device")
        raise typer.Exit(2)
    notification = {"title": title}
    if body:
        notification["body"] = body
    res = _api(url, key, "POST", "/v1/publish", {"recipients": recipients, "notification": notification})
    pub_id = res["publish_id"]
    console.print(pub_id)
    if not wait:
        return
    status: dict[str, Any] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("accepted", total=None)
        while True:
            status = _api(url, key, "GET", f"/v1/publishes/{pub_id}")
            c = status["counts"]
            done = c["sent"] + c["failed"] + c["invalid_token"] + c["expired"]
            progress.update(task, description=status["status"], total=c["planned"] or None, completed=done)
            if status["status"] in ("completed", "failed", "expired", "cancelled"):
                break
            time.sleep(0.2)
    table = Table("status", *status["counts"].keys())
    table.add_row(status["status"], *(str(v) for v in status["counts"].values()))
    console.print(table)
    if status.get("error"):
        err.print(f"[red]{status['error']['code']}[/red]: {status['error']['message']}")


@app.command()
def lab(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 8687,
    write_credentials: Annotated[
        Path | None,
        typer.Option(
            help="Write every provider's lab credentials and DIR/pushgate-lab.toml for pushgate into DIR."
        ),
    ] = None,
    lean: Annotated[bool, typer.Option(help="Keep only counters, not ledger items (benchmarks).")] = False,
    apns_port: Annotated[
        int | None,
        typer.Option(help="APNs simulator port, HTTP/2 over TLS (default: PORT+1); h2c on the next port."),
    ] = None,
    tls_port: Annotated[
        int | None,
        typer.Option(
            help="FCM, OAuth and Web Push over TLS, HTTP/2 or 1.1 (default: PORT+3); "
            "HMS, WNS and MiPush over TLS, HTTP/1.1, on the next port."
        ),
    ] = None,
    plain: Annotated[
        bool,
        typer.Option(help="Serve every simulator but APNs on PORT in cleartext HTTP/1.1 (benchmarks)."),
    ] = False,
) -> None:
    """Run the provider lab: local simulators of FCM, APNs, Web Push, HMS, WNS and MiPush that check
    credentials the way each provider does and keep a ledger."""
    from pushgate.lab.main import run

    run(
        host=host,
        port=port,
        write_credentials=write_credentials,
        lean=lean,
        apns_port=apns_port,
        tls_port=tls_port,
        plain=plain,
    )


def _need_key(key: str) -> None:
    if not key:
        err.print("[red]error:[/red] give the app key with --key or PUSHGATE_KEY")
        raise typer.Exit(2)


@creds_cli.command("list")
def creds_list(url: UrlOpt = "http://127.0.0.1:8686", key: KeyOpt = "") -> None:
    """Show which providers have credentials (metadata only; secrets are never returned)."""
    _need_key(key)
    items = _api(url, key, "GET", "/v1/credentials")["items"]
    table = Table("provider", "source", "fingerprint", "environment", "updated", "expires")
    for c in items:
        table.add_row(
            c["provider"],
            c["source"],
            c["fingerprint"],
            c.get("environment") or "",
            c.get("updated_at") or "",
            c.get("expires_at") or "",
        )
    console.print(table)


@creds_cli.command("set")
def creds_set(
    provider: Annotated[str, typer.Argument(help="fcm, webpush, apns, hms, wns or mipush.")],
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            "-f",
            help="JSON with the provider's fields (an FCM service-account file is accepted as it is).",
        ),
    ],
    url: UrlOpt = "http://127.0.0.1:8686",
    key: KeyOpt = "",
) -> None:
    """Upload or rotate a provider credential from a JSON file."""
    _need_key(key)
    try:
        body = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] cannot read {file}: {exc}")
        raise typer.Exit(2) from None
    if provider == "fcm" and isinstance(body, dict) and body.get("type") == "service_account":
        body = {"service_account": body}
    cred = _api(url, key, "PUT", f"/v1/credentials/{provider}", body)["credential"]
    console.print(f"{provider}: stored (version {cred['version']}, {cred['fingerprint']})")
    if cred.get("vapid_public_key"):
        console.print(f"applicationServerKey for browsers: {cred['vapid_public_key']}")


@creds_cli.command("delete")
def creds_delete(
    provider: Annotated[str, typer.Argument(help="The provider whose uploaded credential to delete.")],
    url: UrlOpt = "http://127.0.0.1:8686",
    key: KeyOpt = "",
) -> None:
    """Delete an uploaded credential (config-file credentials, if any, apply again)."""
    _need_key(key)
    _api(url, key, "DELETE", f"/v1/credentials/{provider}")
    console.print(f"{provider}: deleted")


@keys_cli.command("vapid")
def keys_vapid() -> None:
    """Generate a VAPID key pair for Web Push (paste the output into your config)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from pushgate.domain.render import b64url_encode

    key = ec.generate_private_key(ec.SECP256R1())
    private = b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))
    public = b64url_encode(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    console.print(
        "# Web Push (VAPID) keys; the public key is the applicationServerKey browsers subscribe with"
    )
    console.print("[webpush]")
    console.print('vapid_subject = "mailto:you@example.com"')
    console.print(f'vapid_private_key = "{private}"')
    console.print(f'vapid_public_key = "{public}"')


@config_cli.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (file + environment + defaults) with secrets masked."""
    settings = _settings(config)
    console.print_json(json.dumps(masked(settings)))


def _version() -> str:
    from pushgate import __version__

    return __version__


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
