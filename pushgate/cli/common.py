"""What every command shares: the consoles, the common options, loading settings, running a
coroutine, and calling a running gateway's API."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from pushgate.config import ConfigError, Settings, load_settings, masked

_T = TypeVar("_T")

UrlOpt = Annotated[str, typer.Option(envvar="PUSHGATE_URL", help="Gateway URL ($PUSHGATE_URL).")]
KeyOpt = Annotated[str, typer.Option(envvar="PUSHGATE_KEY", help="App API key ($PUSHGATE_KEY).")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $PUSHGATE_CONFIG, else built-in defaults)."
    ),
]

console = Console()
err = Console(stderr=True)


def settings_or_exit(config: Path | None) -> Settings:
    """The settings, or exit 2 with the error (which names the bad key)."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


#: Query parameters of a database URL whose value is a secret (``?password=``, ``sslpassword=``).
_SECRET_PARAM = re.compile(r"(^|&)([^=&]*(?:pass|secret|key|token)[^=&]*)=[^&]*", re.I)


def redact_database_url(url: str) -> str:
    """``url`` with its password shown as ``****``, wherever it is written.

    Everything before the last ``@`` is the user information (a password may itself hold
    ``@``, ``/`` or ``:``; cutting at the first ``@`` showed the rest of it), an empty user name
    still hides the password, and so do ``password=``-style query parameters. Masking too much
    of an odd URL is the safe side: the output is for people, not for connecting.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:****@{hostpart}" if colon else f"{user}@{hostpart}"
    base, q, query = rest.partition("?")
    if q:
        rest = base + "?" + _SECRET_PARAM.sub(r"\1\2=****", query)
    return f"{scheme}://{rest}"


def shown_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings with every secret masked, for ``config show`` and the banner."""
    shown = masked(settings)
    shown["database_url"] = redact_database_url(settings.database_url)
    if settings.redis_url:
        shown["redis_url"] = redact_database_url(settings.redis_url)
    return shown


#: Every C0 control character and DEL, written as its escape (``\n`` → ``\\n``).
_CONTROL = {c: ascii(chr(c))[1:-1] for c in (*range(0x20), 0x7F)}


class OneLineFormatter(logging.Formatter):
    """One record, one line: control characters in a message are escaped.

    A message carries text from outside (a request path where ``%0A`` arrives decoded as a
    newline, a provider's error text): unescaped, a crafted URL forged whole log lines. A
    traceback, added after the message, keeps its own lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL)
        return super().formatMessage(record)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` on uvloop: the Rust HTTP clients run at half speed on the default loop."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)


def need_key(key: str) -> None:
    if not key:
        err.print("[red]error:[/red] give the app key with --key or PUSHGATE_KEY")
        raise typer.Exit(2)


def call_api(url: str, key: str, method: str, path: str, body: Any = None) -> Any:
    """One request to a running gateway; an error answer or no answer exits 1 with its message."""
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
