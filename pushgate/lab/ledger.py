"""The record of every delivery the lab accepted, so tests can assert what arrived.

Only successful (non-faulted) deliveries are recorded, in arrival order. Counters are kept
separately and always, because they cost nothing; in lean mode (benchmarks) the items are
dropped and only the counters grow, so memory stays flat under millions of sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PROVIDERS = ("fcm", "webpush", "apns", "hms", "wns", "mipush")


def rfc3339_now() -> str:
    """UTC timestamp with microseconds and a `Z`, e.g. 2025-01-01T00:00:00.000000Z."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Ledger:
    """Arrival-ordered delivery items plus per-provider counters."""

    lean: bool = False
    items: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROVIDERS, 0))

    def record(self, provider: str, token: str, **fields: Any) -> None:
        """Count a delivery and, unless lean, keep its details."""
        self.counters[provider] = self.counters.get(provider, 0) + 1
        if self.lean:
            return
        item: dict[str, Any] = {"provider": provider, "token": token, "received_at": rfc3339_now()}
        item.update(fields)
        self.items.append(item)

    def query(self, provider: str | None, token: str | None, limit: int | None) -> dict[str, Any]:
        """Matching items in arrival order; `limit` keeps the most recent ones.

        `total` counts every match so callers can tell truncation from absence. For Web Push
        the token filter matches the endpoint URL or the subscription id.
        """
        matches = [
            item
            for item in self.items
            if (provider is None or item["provider"] == provider)
            and (token is None or item["token"] == token or item.get("subscription_id") == token)
        ]
        shown = matches if limit is None else matches[max(0, len(matches) - limit) :] if limit > 0 else []
        return {"total": len(matches), "items": shown}

    def clear(self) -> None:
        """Forget items and reset counters (a benchmark run starts from zero)."""
        self.items.clear()
        for key in list(self.counters):
            self.counters[key] = 0

    def stats(self) -> dict[str, int]:
        return dict(self.counters)
