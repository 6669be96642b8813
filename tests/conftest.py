"""Shared fixtures: a real provider lab (subprocess), real PostgreSQL, and a real gateway.

The machinery lives in the ``support`` package (``support.lab``, ``support.postgres``,
``support.gateway``); this file only declares the fixtures, so a test module never imports from
here: shared code comes from ``support``.

The tests come in three tiers: ``unit/`` (no server, no database, no subprocess; ``make
test-fast``), ``integration/`` (the lab, a database, a gateway) and ``acceptance/`` (long
end-to-end runs). A unit test that asks for a server or database fixture fails at collection,
so the fast tier stays fast.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
from support.database import KINDS, fresh_database
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab, lab_process
from support.postgres import PostgresServer, start_postgres
from support.redis import RedisServer, start_redis

from pushgate.domain.clock import CLOCK
from pushgate.store.db import Database

UNIT = pathlib.Path(__file__).parent / "unit"
#: Fixtures that start a server, a database or a subprocess: not for the unit tier.
HEAVY_FIXTURES = frozenset(
    {"lab", "postgres", "redis_server", "database_url", "empty_database_url", "db", "gateway"}
)


#: Tests that load both cores on their own (process kills, fault storms, thousands of concurrent
#: publishes, fuzzing, benchmarks): under ``pytest -n 2`` (``make test``) they share one xdist
#: group, so two of them never run at once and starve each other's waits.
SERIAL_MODULES = frozenset(
    {
        "test_bench.py",
        "test_caps_across_processes.py",
        "test_crash_safety.py",
        "test_fault_storms.py",
        "test_fuzz_openapi.py",
        "test_outbound_property.py",
        "test_transactional_crash.py",
        "test_dispatch_groups.py",
        "test_realtime_nodes.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a unit test that needs the lab, a database or a gateway (it belongs in integration/);
    put the tests that load the machine in one xdist group."""
    for item in items:
        if item.path.is_relative_to(UNIT):
            heavy = HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if heavy:
                raise pytest.UsageError(f"{item.nodeid} is in tests/unit but uses {sorted(heavy)}")
        elif item.path.name in SERIAL_MODULES:
            item.add_marker(pytest.mark.xdist_group("machine"))


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    creds = tmp_path_factory.mktemp("lab")
    with lab_process(creds) as url:
        yield Lab(url=url, creds_dir=creds)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """Every store-touching test runs once per database (a copy of one migrated to the head)."""
    with fresh_database(request.param, tmp_path, lambda: request.getfixturevalue("postgres")) as url:
        yield url


@pytest.fixture(params=KINDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """A database with no schema at all, for tests of the migrations themselves."""
    postgres = lambda: request.getfixturevalue("postgres")  # noqa: E731
    with fresh_database(request.param, tmp_path, postgres, migrated=False) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The test's database, opened (and migrated) as the gateway would."""
    database = Database(database_url)
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def gateway(database_url: str, lab: Lab) -> AsyncIterator[Gateway]:
    lab.reset()
    settings = gateway_settings(database_url, lab)
    async with running_gateway(settings) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _real_clock() -> Iterator[None]:
    """Every test starts and ends on the real clock (policy tests move ``CLOCK`` forward)."""
    CLOCK.reset()
    yield
    CLOCK.reset()
