"""The commands that talk to a running gateway over its HTTP API, as a backend would: ``send``
and ``creds``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pushgate.cli.common import KeyOpt, UrlOpt, call_api, console, err, need_key
from pushgate.domain.status import FINAL_COUNTERS

creds_cli = typer.Typer(
    help="Manage provider credentials of an app through a running gateway (needs PUSHGATE_SECRET_KEY there).",
    no_args_is_help=True,
)


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
    need_key(key)
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
    res = call_api(url, key, "POST", "/v1/publish", {"recipients": recipients, "notification": notification})
    pub_id = res["publish_id"]
    console.print(pub_id)
    if not wait:
        return
    status = _follow(url, key, pub_id)
    table = Table("status", *status["counts"].keys())
    table.add_row(status["status"], *(str(v) for v in status["counts"].values()))
    console.print(table)
    if status.get("error"):
        err.print(f"[red]{status['error']['code']}[/red]: {status['error']['message']}")


def _follow(url: str, key: str, pub_id: str) -> dict[str, Any]:
    """Poll the publish with a progress bar on stderr until it is done; answers its last status."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("accepted", total=None)
        while True:
            status: dict[str, Any] = call_api(url, key, "GET", f"/v1/publishes/{pub_id}")
            c = status["counts"]
            done = sum(c.get(k, 0) for k in FINAL_COUNTERS)
            progress.update(task, description=status["status"], total=c["planned"] or None, completed=done)
            if status["status"] in ("completed", "failed", "expired", "cancelled"):
                return status
            time.sleep(0.2)


@creds_cli.command("list")
def creds_list(url: UrlOpt = "http://127.0.0.1:8686", key: KeyOpt = "") -> None:
    """Show which providers have credentials (metadata only; secrets are never returned)."""
    need_key(key)
    items = call_api(url, key, "GET", "/v1/credentials")["items"]
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
    need_key(key)
    try:
        body = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] cannot read {file}: {exc}")
        raise typer.Exit(2) from None
    if provider == "fcm" and isinstance(body, dict) and body.get("type") == "service_account":
        body = {"service_account": body}
    cred = call_api(url, key, "PUT", f"/v1/credentials/{provider}", body)["credential"]
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
    need_key(key)
    call_api(url, key, "DELETE", f"/v1/credentials/{provider}")
    console.print(f"{provider}: deleted")
