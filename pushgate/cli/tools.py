"""Local tools that need no running gateway: the provider ``lab``, ``keys vapid`` and
``config show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pushgate.cli.common import ConfigOpt, console, settings_or_exit, shown_settings

keys_cli = typer.Typer(help="Generate provider keys.", no_args_is_help=True)
config_cli = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)


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
    # Printed verbatim (typer.echo, not Rich): Rich read ``[webpush]`` as a style tag and wrapped
    # the public key at the terminal's width, so the output was not the TOML it says it is.
    typer.echo(
        "# Web Push (VAPID) keys; the public key is the applicationServerKey browsers subscribe with\n"
        "[webpush]\n"
        'vapid_subject = "mailto:you@example.com"\n'
        f'vapid_private_key = "{private}"\n'
        f'vapid_public_key = "{public}"'
    )


@config_cli.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (file + environment + defaults) with secrets masked."""
    settings = settings_or_exit(config)
    console.print_json(json.dumps(shown_settings(settings)))
