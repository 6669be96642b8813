"""The lab ledger's ``limit`` keeps the most recent matches, however it compares with their count."""

from __future__ import annotations

from pushgate.lab.ledger import Ledger


def test_a_limit_above_the_match_count_returns_every_match() -> None:
    """200 items with limit=210 used to return 10 (a negative slice start)."""
    ledger = Ledger()
    for i in range(200):
        ledger.record("fcm", f"t{i}")
    assert len(ledger.query(None, None, 210)["items"]) == 200
    assert [x["token"] for x in ledger.query(None, None, 3)["items"]] == ["t197", "t198", "t199"]
    assert ledger.query(None, None, 0)["items"] == []
    assert ledger.query("fcm", None, None)["total"] == 200
