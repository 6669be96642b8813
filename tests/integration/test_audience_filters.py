"""Audience filters (issue 12, acceptance 3): counts, search and delivery agree with a brute-force
evaluation of the same filter, on both databases.

The evaluator below is this test's own reading of docs/filters.md, written without the package's
parser or SQL: the SQL is checked against it device by device. The 50,000 devices are inserted
directly through the store's tables (registration through the API is tested on a few devices
in ``test_filter_fields.py``); their app-version keys come from ``version_key``, which the
evaluator does not use: it compares versions as tuples of integers.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import publish
from support.filters import evaluate
from support.gateway import Gateway
from support.lab import Lab

from pushgate.domain.filters import parse, version_key
from pushgate.store import filters
from pushgate.store.apps import AppStore
from pushgate.store.db import Database
from pushgate.store.devices import token_hash
from pushgate.store.filters import CountTimeout, FilterStore, condition, count_query, narrow, page_query
from pushgate.store.schema import device_tags, devices

N = 50_000
VERSIONS = [
    "2.9.9",
    "2.10.0",
    "2.10.1",
    "2.9.10",
    "2.10.0-rc.1",
    "2.10",
    "10.0",
    "1.0",
    "3.0.0",
    None,
    "banana",
]
PROVIDERS = ["fcm", "apns", "hms", "wns"]
PLATFORMS = {"fcm": "android", "apns": "ios", "hms": "android", "wns": "windows"}
ACCEPTANCE = {
    "all": [
        {"provider": {"in": ["fcm", "apns"]}},
        {"tag": "plan", "is": "pro"},
        {"app_version": {"gte": "2.10.0"}},
        {"not": {"user": "absent"}},
    ]
}


def population(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` device specs with random providers, tags, versions, users, statuses."""
    rng = random.Random(seed)
    now = time.time()
    out = []
    for i in range(n):
        provider = rng.choice(PROVIDERS)
        token = secrets.token_hex(32) if provider == "apns" else f"{provider}_{secrets.token_urlsafe(30)}"
        plan = rng.choices(["pro", "free", None], [10, 60, 30])[0]
        tags = {"plan": plan} if plan else {}
        if rng.random() < 0.2:
            tags["beta"] = "yes"
        out.append(
            {
                "id": f"dev_{i:06d}_{secrets.token_hex(4)}",
                "provider": provider,
                "token": token,
                "platform": PLATFORMS[provider],
                "user": rng.choice([None, None, "", *(f"u{k}" for k in range(7))])
                and f"u{rng.randrange(5000)}",
                "app_version": rng.choice(VERSIONS),
                "tags": tags,
                "status": "invalid" if rng.random() < 0.05 else "active",
                "locale": rng.choice([None, "en", "de-AT", "pt-BR", "pt-PT", "PT-br", "fr"]),
                "created_at": now - rng.randrange(100 * 86400),
                "last_seen_at": now - rng.randrange(20 * 86400),
            }
        )
    return out


async def insert(db: Database, app_id: str, specs: list[dict[str, Any]]) -> None:
    """The specs as rows of ``devices`` and ``device_tags``, in bulk."""
    rows, tag_rows = [], []
    for d in specs:
        rows.append(
            {
                "id": d["id"], "app_id": app_id, "provider": d["provider"], "token": d["token"],
                "token_hash": token_hash(d["provider"], d["token"]), "platform": d["platform"],
                "user": d["user"], "status": d["status"], "locale": d.get("locale"),
                "timezone": d.get("timezone"), "meta": None,
                "app_version": d["app_version"],
                "app_version_key": version_key(d["app_version"]) if d["app_version"] else None,
                "created_at": d["created_at"], "updated_at": d["created_at"],
                "last_seen_at": d["last_seen_at"],
            }
        )  # fmt: skip
        tag_rows += [
            {"device_id": d["id"], "app_id": app_id, "key": k, "value": v} for k, v in d["tags"].items()
        ]
    async with db.write() as conn:
        for k in range(0, len(rows), 5000):
            await conn.execute(sa.insert(devices), rows[k : k + 5000])
        for k in range(0, len(tag_rows), 5000):
            await conn.execute(sa.insert(device_tags), tag_rows[k : k + 5000])
    if db.dialect == "postgresql":
        # What autovacuum does within a minute of a bulk load: PostgreSQL plans by statistics,
        # and without any it takes the new tables for empty (docs/filters.md, "Statistics").
        async with db.write() as conn:
            await conn.execute(sa.text("ANALYZE devices"))
            await conn.execute(sa.text("ANALYZE device_tags"))


async def _default_app(db: Database) -> str:
    app = await AppStore(db).get_by_name("default")
    assert app is not None
    return app.id


async def _search_all(gw: Gateway, body: dict[str, Any]) -> tuple[list[str], int]:
    """Every device id ``POST /v1/devices/search`` pages through, and its ``total_count``."""
    ids: list[str] = []
    cursor = None
    total = -1
    while True:
        r = await gw.client.post(
            "/v1/devices/search", json={**body, "limit": 500, "include_total_count": True, "cursor": cursor}
        )
        assert r.status_code == 200, r.text
        page = r.json()
        ids += [d["id"] for d in page["items"]]
        total = page["total_count"]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, total


async def test_acceptance_filter_count_search_and_delivery_agree_with_brute_force(
    gateway: Gateway, db: Database, lab: Lab
) -> None:
    app_id = await _default_app(db)
    specs = population(N, seed=12)
    await insert(db, app_id, specs)
    matched = [d for d in specs if d["status"] == "active" and evaluate(ACCEPTANCE, d)]
    # The data covers the comparison the issue names, on both sides of it.
    versions = Counter(d["app_version"] for d in specs if d["status"] == "active" and d["provider"] == "fcm")
    assert versions["2.10.0"] and versions["2.9.9"] and versions["2.10.0-rc.1"]
    assert any(d["app_version"] == "2.10.0" for d in matched)
    assert not any(d["app_version"] in ("2.9.9", "2.9.10", "2.10.0-rc.1") for d in matched)
    assert 300 < len(matched) < 2000

    r = await gateway.client.post(
        "/v1/audience/count", json={"recipients": [{"type": "filter", "filter": ACCEPTANCE}]}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"devices": len(matched), "users": len({d["user"] for d in matched})}

    ids, total = await _search_all(gateway, {"filter": ACCEPTANCE})
    assert (sorted(ids), total) == (sorted(d["id"] for d in matched), len(matched))

    # A user also named directly: their devices the filter reaches are still delivered once.
    # (One whose devices are all FCM or APNs, some outside the filter: the lab takes their tokens.)
    def devices_of(user: str) -> list[dict[str, Any]]:
        return [d for d in specs if d["user"] == user and d["status"] == "active"]

    user = next(
        u
        for u in sorted({d["user"] for d in matched})
        if all(d["provider"] in ("fcm", "apns") for d in devices_of(u))
        and not all(evaluate(ACCEPTANCE, d) for d in devices_of(u))
    )
    expected = {d["id"]: d for d in [*matched, *devices_of(user)]}
    assert len(expected) > len(matched)
    recipients = [{"type": "filter", "filter": ACCEPTANCE}, {"type": "user", "user": user}]
    r = await gateway.client.post("/v1/audience/count", json={"recipients": recipients})
    assert r.json()["devices"] == len(expected)

    publish_id = await publish(gateway.client, recipients=recipients)
    done = await gateway.wait_done(publish_id, within=120)
    records = await gateway.deliveries(publish_id)
    assert done["counts"]["sent"] == len(expected), done
    assert sorted(r["device_id"] for r in records if r["status"] == "sent") == sorted(expected)
    assert len(records) == len(expected)
    ours = {d["token"].lower() if d["provider"] == "apns" else d["token"] for d in expected.values()}
    got = Counter(
        i["token"] for p in ("fcm", "apns") for i in lab.ledger(provider=p)["items"] if i["token"] in ours
    )
    assert got == Counter({t: 1 for t in ours})


def _plan(lines: list[str]) -> str:
    return "\n".join(lines)


async def _explain(db: Database, q: Any) -> str:
    sql = str(q.compile(db.engine.sync_engine, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
    async with db.read() as conn:
        rows = (await conn.execute(sa.text(prefix + sql))).all()
    return _plan([str(r[-1]) for r in rows])


async def test_selective_filters_use_an_index(db: Database) -> None:
    """EXPLAIN of the count of selective filters: an index of the filter's leaf, never a scan of
    every device (docs/filters.md shows these plans)."""
    app = (await AppStore(db).create("explained"))[0]
    await insert(db, app.id, population(20_000, seed=5))
    # (filter, the index its count uses, the index its pages use: None where the database may
    # as well walk the app's devices in id order, as a page of dense matches fills quickly)
    cases: dict[str, tuple[dict[str, Any], str, str | None]] = {
        "rare tag": (
            {"tag": "beta", "is": "no-such-value"},
            "ix_device_tags_lookup",
            "ix_device_tags_lookup",
        ),
        "rare version": (
            {"app_version": {"is": "10.0.1"}},
            "ix_devices_app_version",
            "ix_devices_app_version",
        ),
        "version range": ({"app_version": {"gte": "10.0"}}, "ix_devices_app_version", None),
        "acceptance": (ACCEPTANCE, "ix_device", None),
    }
    for name, (f, counted_by, paged_by) in cases.items():
        where = condition(parse(f), app.id, db.dialect)
        sort = db.dialect == "sqlite" and narrow(parse(f))  # as FilterStore pages
        page = page_query([devices.c.id], app.id, where, "dev_", 500, sort=sort)
        for query, q, index in (("count", count_query(app.id, where), counted_by), ("page", page, paged_by)):
            plan = await _explain(db, q)
            print(f"--- {db.dialect} {name} {query}\n{plan}")
            assert index is None or index in plan, plan
            assert "Seq Scan on devices" not in plan and "SCAN devices" not in plan, plan


async def test_a_count_past_its_time_bound_is_abandoned(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count that runs past ``COUNT_SECONDS`` raises CountTimeout (the API's 503), and leaves
    the pooled connection as it found it: the next count, with the usual bound, answers."""
    app = (await AppStore(db).create("slow"))[0]
    specs = population(20_000, seed=9)
    await insert(db, app.id, specs)
    store = FilterStore(db)
    where = condition(parse({"not": {"tag": "nothing", "exists": True}}), app.id, db.dialect)
    # SQLite: a deadline already past interrupts at the first check; PostgreSQL: 1 ms, far less
    # than reading 20,000 rows.
    monkeypatch.setattr(filters, "COUNT_SECONDS", 0.001 if db.dialect == "postgresql" else -1.0)
    with pytest.raises(CountTimeout):
        await store.count(app.id, where)
    monkeypatch.undo()
    assert await store.count(app.id, where) == (
        sum(1 for d in specs if d["status"] == "active"),
        len({d["user"] for d in specs if d["status"] == "active" and d["user"]}),
    )
