"""Wire times are RFC 3339 UTC strings; storage uses epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(value: str) -> float:
    """Parse an RFC 3339 time; a value without an offset is rejected (ambiguous)."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("time must include a UTC offset, e.g. 2026-01-01T12:00:00Z")
    return dt.timestamp()
