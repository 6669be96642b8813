"""Storage faults: which database errors mean "the database cannot take writes right now".

A full disk, a read-only database (a file system remounted read-only, a PostgreSQL primary
demoted or set ``default_transaction_read_only``), a server that went away or a lock held too
long by another process are conditions of the storage, not of the request: the same write will
work once the operator fixes them. They are raised as :class:`StorageUnavailable` with a stable
``reason`` so the API can answer ``503 storage_unavailable`` (not ``500``), ``/readyz`` can say
why it is not ready, and the engine can stop sending until its outcomes can be committed.
Everything else (a constraint violation, a bug) keeps its own exception.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import sqlalchemy as sa

#: ``reason`` values, part of the API (``error.details.reason``) and of ``/readyz``.
DISK_FULL = "disk_full"
READ_ONLY = "read_only"
UNREACHABLE = "unreachable"
BUSY = "busy"
IO_ERROR = "io_error"

#: SQLite primary result codes (``sqlite3.Error.sqlite_errorcode & 0xFF``).
_SQLITE = {
    5: BUSY,  # SQLITE_BUSY: another process held the write lock past busy_timeout
    8: READ_ONLY,  # SQLITE_READONLY: file permissions, a read-only mount, query_only
    10: IO_ERROR,  # SQLITE_IOERR
    13: DISK_FULL,  # SQLITE_FULL: no space, or max_page_count reached
    14: UNREACHABLE,  # SQLITE_CANTOPEN
}

#: PostgreSQL SQLSTATEs, exact codes first, then their two-character classes.
_PG_CODES = {
    "25006": READ_ONLY,  # read_only_sql_transaction (default_transaction_read_only, a standby)
    "53100": DISK_FULL,  # disk_full
    "58030": IO_ERROR,  # io_error
    "55P03": BUSY,  # lock_not_available
    "57014": BUSY,  # query_canceled (statement or lock timeout)
}
_PG_CLASSES = {
    "08": UNREACHABLE,  # connection exception
    "53": DISK_FULL,  # insufficient resources (disk, memory, connections)
    "57": UNREACHABLE,  # operator intervention: admin shutdown, terminated session, crash
}

_HOW_TO_FIX = {
    DISK_FULL: "the database's disk is full: free space or grow the volume",
    READ_ONLY: "the database is read-only: make it writable again (permissions, mount, primary)",
    UNREACHABLE: "the database cannot be reached: check that it is running and reachable",
    BUSY: "the database stayed locked by another process: retry shortly",
    IO_ERROR: "the database reported an I/O error: check its disk",
}


@dataclass(frozen=True, slots=True)
class StorageFault:
    """What the last failed write said; ``since`` is the wall-clock time it was first seen."""

    reason: str
    detail: str
    since: float

    @property
    def message(self) -> str:
        return f"{_HOW_TO_FIX.get(self.reason, self.reason)} ({self.detail})"


class StorageUnavailable(Exception):
    """The database cannot take this write now; nothing of it was stored. Retry later."""

    def __init__(self, fault: StorageFault) -> None:
        super().__init__(fault.message)
        self.fault = fault

    @property
    def reason(self) -> str:
        return self.fault.reason


def fault_reason(exc: BaseException) -> str | None:
    """The storage fault ``exc`` reports, or None when it is not one (a bug, bad data)."""
    if isinstance(exc, StorageUnavailable):
        return exc.reason
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return _SQLITE.get(code & 0xFF) if isinstance(code, int) else None
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str) and len(state) == 5:
        return _PG_CODES.get(state) or _PG_CLASSES.get(state[:2])
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return UNREACHABLE
    if isinstance(orig, (ConnectionError, TimeoutError, OSError)):
        return UNREACHABLE  # the server refused or dropped the connection
    return None


def short_detail(exc: BaseException) -> str:
    """The driver's own words, first line only: SQLAlchemy's message carries the statement
    (never its parameters, ``hide_parameters``), which says nothing to an operator here."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    text = str(orig).strip().splitlines()
    return (text[0] if text else type(orig).__name__)[:200]
