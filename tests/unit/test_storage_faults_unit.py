"""Storage faults without a database server: which driver errors are storage faults (and
which are not), and how the engine's gate logs them and pauses."""

from __future__ import annotations

import logging
import sqlite3

import asyncpg
import pytest
import sqlalchemy as sa

from pushgate.engine.storage import MAX_BACKOFF, StorageGate
from pushgate.store.db import Database
from pushgate.store.faults import (
    BUSY,
    DISK_FULL,
    READ_ONLY,
    UNREACHABLE,
    StorageFault,
    StorageUnavailable,
    fault_reason,
)


def _sqlite_error(*pragmas_then_write: str) -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    try:
        for sql in pragmas_then_write:
            conn.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("no error")


def test_sqlite_full_and_read_only_are_storage_faults_and_a_constraint_is_not() -> None:
    full = _sqlite_error("PRAGMA max_page_count = 1", "INSERT INTO t VALUES (randomblob(100000))")
    read_only = _sqlite_error("PRAGMA query_only = 1", "INSERT INTO t VALUES (1)")
    unique = _sqlite_error(
        "CREATE UNIQUE INDEX u ON t (x)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"
    )
    assert fault_reason(full) == DISK_FULL
    # Wrapped the way SQLAlchemy raises them.
    assert fault_reason(sa.exc.OperationalError("INSERT", {}, read_only)) == READ_ONLY
    assert fault_reason(sa.exc.IntegrityError("INSERT", {}, unique)) is None
    assert fault_reason(ValueError("no")) is None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            asyncpg.exceptions.ReadOnlySQLTransactionError(
                "cannot execute INSERT in a read-only transaction"
            ),
            READ_ONLY,
        ),
        (asyncpg.exceptions.DiskFullError("could not extend file"), DISK_FULL),
        (
            asyncpg.exceptions.AdminShutdownError("terminating connection"),
            UNREACHABLE,
        ),
        (asyncpg.exceptions.LockNotAvailableError("could not obtain lock"), BUSY),
        (ConnectionRefusedError(111, "Connection refused"), UNREACHABLE),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), None),
        (asyncpg.exceptions.UndefinedTableError("relation does not exist"), None),
    ],
)
def test_postgresql_states(error: BaseException, reason: str | None) -> None:
    assert fault_reason(error) == reason


def test_the_gate_logs_once_per_interval_and_its_pause_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pushgate.engine")
    gate = StorageGate(Database("sqlite+aiosqlite:///:memory:"), log_interval=3600)
    exc = StorageUnavailable(StorageFault(DISK_FULL, "database or disk is full", 0.0))
    for _ in range(50):
        gate.report(exc, "claiming jobs")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "disk_full" in lines[0] and "free space" in lines[0], lines
    chatty = StorageGate(Database("sqlite+aiosqlite:///:memory:"), log_interval=0)
    for _ in range(3):
        chatty.report(exc, "claiming jobs")
    assert len(caplog.records) == 4
    pauses = [StorageGate.pause(n) for n in range(20)]
    assert pauses[0] < pauses[1] < pauses[2] and max(pauses) == MAX_BACKOFF


def test_the_pause_stays_capped_through_an_outage_of_hours() -> None:
    """2**1024 no longer converts to a float: after ~85 minutes of 5 s pauses the retry raised
    OverflowError and dropped the outcomes it held."""
    assert StorageGate.pause(0) < StorageGate.pause(1) <= MAX_BACKOFF
    assert StorageGate.pause(1_024) == MAX_BACKOFF
    assert StorageGate.pause(100_000) == MAX_BACKOFF
