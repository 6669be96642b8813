"""A fresh, empty database of either kind for one gateway: every store-touching test runs once on
SQLite and once on PostgreSQL, because the two differ in locking, types and SQL dialect."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator

from pushgate.store.db import Database
from support.postgres import PostgresServer

KINDS = ("sqlite", "postgresql")


#: Migrated databases to copy, made once per session: a test's database starts at the schema's
#: head without running the migrations again (a PostgreSQL test's setup spent most of its time
#: there). Tests of the migrations themselves ask for an empty one (``migrated=False``).
_TEMPLATES: dict[str, str] = {}
_PG_TEMPLATE = "pushgate_migrated_template"


def _migrate(url: str) -> None:
    async def run() -> None:
        db = Database(url)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    # A thread of its own: the caller may be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(run())).result(timeout=120)


def _sqlite_template() -> str:
    if "sqlite" not in _TEMPLATES:
        path = pathlib.Path(tempfile.mkdtemp(prefix="pushgate-template-")) / "migrated.db"
        _migrate(f"sqlite+aiosqlite:///{path}")
        _TEMPLATES["sqlite"] = str(path)
    return _TEMPLATES["sqlite"]


def _postgres_template(server: PostgresServer) -> str:
    key = f"postgresql:{server.url}"
    if key not in _TEMPLATES:
        _migrate(server.create_database(_PG_TEMPLATE))
        _TEMPLATES[key] = _PG_TEMPLATE
    return _TEMPLATES[key]


@contextlib.contextmanager
def fresh_database(
    kind: str, directory: pathlib.Path, postgres: Callable[[], PostgresServer], *, migrated: bool = True
) -> Iterator[str]:
    """Yield the SQLAlchemy URL of a new database: a file in ``directory`` for SQLite, a new
    database on the session's server (``postgres()``, started on first use) for PostgreSQL,
    dropped afterwards. ``migrated``: a copy of a database migrated to the schema's head (else
    empty)."""
    if kind == "sqlite":
        path = directory / "pushgate.db"
        if migrated:
            shutil.copyfile(_sqlite_template(), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    server = postgres()
    name = "t_" + uuid.uuid4().hex[:12]
    url = server.create_database(name, _postgres_template(server) if migrated else None)
    yield url
    try:
        server.drop_database(name)
    except Exception:
        pass
