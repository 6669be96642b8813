"""``pushgate apps``: create and list apps (tenants) directly in the configured database."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pushgate.cli.common import ConfigOpt, console, err, run, settings_or_exit

apps_cli = typer.Typer(help="Create and list apps (tenants) and their API keys.", no_args_is_help=True)


@apps_cli.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="App name (unique).")],
    key: Annotated[str | None, typer.Option(help="Use this API key instead of a random one.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create an app and print its API key (shown only once)."""
    from pushgate.runtime import open_database
    from pushgate.store.apps import AppStore, KeyTooShort, check_chosen_key

    settings = settings_or_exit(config)
    try:
        check_chosen_key(key)
    except KeyTooShort as exc:
        err.print(f"[red]error:[/red] --key: {exc}")
        raise typer.Exit(2) from None

    async def main() -> tuple[str, str] | None:
        async with open_database(settings) as db:
            store = AppStore(db)
            if await store.get_by_name(name):
                return None
            created, plain = await store.create(name, key=key)
            return created.id, plain

    result = run(main())
    if result is None:
        err.print(f"[red]error:[/red] an app named {name!r} already exists")
        raise typer.Exit(1)
    console.print(f"app {name!r} created: id {result[0]}")
    console.print(f"API key (shown only this once): [bold]{result[1]}[/bold]")


@apps_cli.command("list")
def apps_list(config: ConfigOpt = None) -> None:
    """List apps."""
    from pushgate.domain.timefmt import rfc3339
    from pushgate.runtime import open_database
    from pushgate.store.apps import App, AppStore

    settings = settings_or_exit(config)

    async def main() -> list[tuple[App, int]]:
        async with open_database(settings) as db:
            return await AppStore(db).list_apps()

    table = Table("id", "name", "keys", "created")
    for a, n in run(main()):
        table.add_row(a.id, a.name, str(n), rfc3339(a.created_at) or "")
    console.print(table)
