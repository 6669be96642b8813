"""``pushgate apps``: create and list apps (tenants), and ``pushgate apps keys``: create, list and
revoke their API keys, directly in the configured database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from pushgate.cli.common import ConfigOpt, console, err, run, settings_or_exit

if TYPE_CHECKING:
    from pushgate.config import Settings
    from pushgate.store.apps import ApiKey, AppStore

_T = TypeVar("_T")

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
    console.print(f"API key (shown only this once): [bold]{escape(result[1])}[/bold]")


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


keys_cli = typer.Typer(
    help="Create, list and revoke an app's API keys (names, scopes, revocation).", no_args_is_help=True
)
apps_cli.add_typer(keys_cli, name="keys")

AppArg = Annotated[str, typer.Argument(help="App name or id.")]


@keys_cli.command("create")
def keys_create(
    app: AppArg,
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'billing backend'.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            "-s",
            help="admin, publish, register or read; repeat or separate with commas (default: admin).",
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Use this key (24+ characters) instead of a random one.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it (shown only once)."""
    from pushgate.domain.scopes import Scope, UnknownScope, format_scopes, parse_scopes
    from pushgate.store.apps import KeyTooShort, check_chosen_key

    settings = settings_or_exit(config)
    try:
        check_chosen_key(key)
        scopes = parse_scopes(scope or [Scope.ADMIN])
    except (KeyTooShort, UnknownScope) as exc:
        err.print(
            f"[red]error:[/red] {'--key' if isinstance(exc, KeyTooShort) else '--scope'}: {escape(str(exc))}"
        )
        raise typer.Exit(2) from None
    if not name.strip() or len(name) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        err.print("[red]error:[/red] NAME: 1 to 100 characters, no control characters")
        raise typer.Exit(2)

    async def main(store: AppStore) -> tuple[ApiKey, str] | None:
        found = await store.find(app)
        return None if found is None else await store.add_key(found.id, key, name=name, scopes=scopes)

    created = _with_store(settings, main)
    if created is None:
        _no_app(app)
    meta, plain = created
    console.print(
        f"key {escape(meta.name)!r} created: id {meta.id}, scopes {format_scopes(meta.scopes)}",
        soft_wrap=True,
    )
    console.print("API key (shown only this once):")
    console.print(escape(plain), highlight=False, soft_wrap=True)


@keys_cli.command("list")
def keys_list(app: AppArg, config: ConfigOpt = None) -> None:
    """List an app's keys (never their secrets), revoked ones included."""
    from pushgate.domain.scopes import format_scopes
    from pushgate.domain.timefmt import rfc3339

    settings = settings_or_exit(config)

    async def main(store: AppStore) -> list[ApiKey] | None:
        found = await store.find(app)
        return None if found is None else await store.list_keys(found.id)

    keys = _with_store(settings, main)
    if keys is None:
        _no_app(app)
    rows = [("id", "name", "scopes", "prefix", "created", "last used", "revoked")]
    rows += [
        (
            k.id,
            k.name,
            format_scopes(k.scopes).replace(" ", ","),
            k.prefix,
            rfc3339(k.created_at) or "",
            rfc3339(k.last_used_at) or "never",
            rfc3339(k.revoked_at) or "",
        )
        for k in keys
    ]
    # Plain aligned columns, never cut to the terminal's width: ids are copied from here.
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        line = "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        console.print(escape(line), highlight=False, soft_wrap=True)


@keys_cli.command("revoke")
def keys_revoke(
    app: AppArg,
    key_id: Annotated[str, typer.Argument(help="The key's id (from `pushgate apps keys list`).")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a key: it authenticates nothing any more (running gateways notice within 30 s)."""
    from pushgate.store.apps import NoSuchKey

    settings = settings_or_exit(config)

    async def main(store: AppStore) -> ApiKey | None:
        found = await store.find(app)
        # The operator may revoke an app's last admin key (the API refuses to): they can always
        # create another one here.
        return None if found is None else await store.revoke_key(found.id, key_id, keep_an_admin=False)

    try:
        revoked = _with_store(settings, main)
    except NoSuchKey:
        err.print(
            f"[red]error:[/red] app {app!r} has no key {key_id!r} (see `pushgate apps keys list {app}`)"
        )
        raise typer.Exit(1) from None
    if revoked is None:
        _no_app(app)
    console.print(
        f"key {revoked.id} ({escape(revoked.name)!r}) revoked: running gateways refuse it within 30 s",
        soft_wrap=True,
    )


@apps_cli.command("sockudo-key")
def sockudo_key(app: AppArg, config: ConfigOpt = None) -> None:
    """Create a signing key for Sockudo clients (docs/compat.md, Sockudo) and print its app id,
    key and secret (the secret is shown only once). Needs secret_key: the secret is stored sealed."""
    from pushgate.store.compat_keys import CompatKeyStore
    from pushgate.store.secretbox import SecretBox

    settings = settings_or_exit(config)
    if not settings.secret_key:
        err.print(
            "[red]error:[/red] set secret_key (PUSHGATE_SECRET_KEY): signing secrets are sealed with it"
        )
        raise typer.Exit(2)
    master = settings.secret_key

    async def main(store: AppStore) -> tuple[str, str, str] | None:
        found = await store.find(app)
        if found is None:
            return None
        key, secret = await CompatKeyStore(store.db, SecretBox(master)).create(found.id, "sockudo")
        return found.id, key.auth_key, secret

    created = _with_store(settings, main)
    if created is None:
        _no_app(app)
    app_id, auth_key, secret = created
    # Verbatim (not Rich): the secret is copied from here, and Rich wraps long lines.
    typer.echo(f"app_id: {app_id}\nkey:    {auth_key}\nsecret: {secret}  (shown only this once)")


def _with_store(settings: Settings, main: Callable[[AppStore], Awaitable[_T]]) -> _T:
    from pushgate.runtime import open_database
    from pushgate.store.apps import AppStore

    async def run_it() -> _T:
        async with open_database(settings) as db:
            return await main(AppStore(db))

    return run(run_it())


def _no_app(app: str) -> NoReturn:
    err.print(f"[red]error:[/red] no app named {app!r} (see `pushgate apps list`)")
    raise typer.Exit(1)
