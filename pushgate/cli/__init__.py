"""The ``pushgate`` command line: one module per group of commands.

``process`` runs the gateway (``serve``, ``worker``, ``migrate``), ``apps`` writes the database
directly, ``remote`` talks to a running gateway's API, ``tools`` needs neither. Commands are
registered here, in the order ``pushgate --help`` lists them.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pushgate.bench.cli import bench_cli
from pushgate.cli.apps import apps_cli
from pushgate.cli.process import migrate, serve, worker
from pushgate.cli.remote import creds_cli, send
from pushgate.cli.tools import config_cli, keys_cli, lab

app = typer.Typer(
    help="pushgate: a self-hosted push notification gateway.\n\n"
    "Start with `pushgate serve`; try it without real provider accounts with `pushgate lab`.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(apps_cli, name="apps")
app.add_typer(keys_cli, name="keys")
app.add_typer(config_cli, name="config")
app.add_typer(creds_cli, name="creds")
app.add_typer(bench_cli, name="bench")
for command in (serve, worker, migrate, send, lab):
    app.command()(command)


def _version(show: bool) -> None:
    if show:
        from pushgate import __version__

        typer.echo(f"pushgate {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """pushgate: a self-hosted push notification gateway."""


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
