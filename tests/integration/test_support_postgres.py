import pathlib

import asyncpg
from support.postgres import start_postgres


async def test_throwaway_postgres(tmp_path: pathlib.Path) -> None:
    server = start_postgres(tmp_path)
    try:
        assert server.url.startswith("postgresql+asyncpg://")
        assert server.url.endswith("/pushgate_test")
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("select 1") == 1
            assert await conn.fetchval("select current_database()") == "pushgate_test"
        finally:
            await conn.close()

        other = server.create_database("pushgate_test_extra")
        conn = await asyncpg.connect(other.replace("+asyncpg", ""))
        try:
            assert await conn.fetchval("select current_database()") == "pushgate_test_extra"
        finally:
            await conn.close()
    finally:
        server.stop()
    if not server.external:
        assert server.root_dir is not None and not server.root_dir.exists()
