"""Every leaf of the filter language through the API, on devices registered through the API, held
to the independent evaluator (``support/filters.py``); the 400s of bad filters; app versions as
registration stores them; device stats."""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from support.api import fcm_token, publish
from support.bulk import register_many
from support.filters import evaluate
from support.gateway import Gateway

from pushgate.domain.filters import MAX_DEPTH, MAX_NODES, version_key
from pushgate.store.db import Database
from pushgate.store.schema import devices


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _bodies(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        apns = rng.random() < 0.4
        body: dict[str, Any] = {
            "provider": "apns" if apns else "fcm",
            "token": secrets.token_hex(32) if apns else fcm_token(),
            "platform": "ios" if apns else rng.choice(["android", "web"]),
            "tags": {
                k: v
                for k, v in (("plan", rng.choice(["pro", "free", None])), ("beta", rng.choice(["1", None])))
                if v
            },
            "channels": rng.sample(["news", "sport", "weather"], rng.randrange(3)),
            "meta": {k: v for k, v in (("team", rng.choice(["red", "blue", None])),) if v},
        }
        for field, choices in (
            ("user", [None, "ann", "bob", "cy", "dee"]),
            ("locale", [None, "en", "de-AT", "pt-BR", "pt-PT", "PT-br", "fr", "ptx"]),
            ("timezone", [None, "Europe/Berlin", "America/New_York"]),
            ("app_version", [None, "2.9.9", "2.10.0", "2.10", "2.10.0-rc.1", "3.1", "build 7"]),
        ):
            value = rng.choice(choices)
            if value is not None:
                body[field] = value
        out.append(body)
    return out


def _spec(body: dict[str, Any], listed: dict[str, Any]) -> dict[str, Any]:
    """What the evaluator reads of a registered device."""
    return {
        **body,
        "id": listed["id"],
        "user": body.get("user"),
        "locale": body.get("locale"),
        "timezone": body.get("timezone"),
        "app_version": body.get("app_version"),
        "created_at": datetime.fromisoformat(listed["created_at"].replace("Z", "+00:00")).timestamp(),
        "last_seen_at": datetime.fromisoformat(listed["last_seen_at"].replace("Z", "+00:00")).timestamp(),
    }


async def _get_all(gw: Gateway, f: dict[str, Any]) -> tuple[set[str], int]:
    """``GET /v1/devices?filter=`` paged 7 at a time (keyset pages), with the total."""
    import json

    ids: list[str] = []
    cursor = None
    total = -1
    while True:
        params: dict[str, Any] = {"filter": json.dumps(f), "limit": 7, "include_total_count": "true"}
        if cursor:
            params["cursor"] = cursor
        r = await gw.client.get("/v1/devices", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        ids += [d["id"] for d in page["items"]]
        total, cursor = page["total_count"], page["next_cursor"]
        if cursor is None:
            assert len(ids) == len(set(ids))
            return set(ids), total


async def test_every_leaf_matches_the_brute_force_evaluation(gateway: Gateway) -> None:
    t0 = time.time() - 1
    bodies = _bodies(150, seed=7)
    listed = await register_many(gateway, bodies)
    specs = [_spec(b, d) for b, d in zip(bodies, listed, strict=True)]
    filters: list[dict[str, Any]] = [
        {"provider": {"is": "apns"}},
        {"platform": {"in": ["web", "ios"]}},
        {"user": "present"},
        {"user": "absent"},
        {"user": {"in": ["ann", "cy"]}},
        {"channels": {"any": ["news", "weather"]}},
        {"channels": {"all": ["news", "sport"]}},
        {"tag": "plan", "is": "pro"},
        {"tag": "plan", "in": ["pro", "free"]},
        {"tag": "beta", "exists": True},
        {"tag": "beta", "exists": False},
        {"tag": "plan", "not": "free"},
        {"meta": "team", "is": "red"},
        {"meta": "team", "exists": False},
        {"locale": {"is": "pt-BR"}},
        {"locale": "absent"},
        {"language": {"is": "pt"}},
        {"language": {"in": ["de", "en"]}},
        {"timezone": {"is": "Europe/Berlin"}},
        {"timezone": "present"},
        {"app_version": {"gte": "2.10.0"}},
        {"app_version": {"lt": "2.10.0"}},
        {"app_version": {"is": "2.10"}},
        {"app_version": {"gt": "2.10.0-rc.1"}},
        {"app_version": {"lte": "2.9.9"}},
        {"app_version": "present"},
        {"created": {"after": _iso(t0)}},
        {"last_seen": {"before": _iso(t0)}},
        {
            "any": [
                {"not": {"tag": "plan", "exists": True}},
                {"all": [{"language": {"is": "pt"}}, {"user": "present"}]},
            ]
        },
    ]
    for f in filters:
        want = {d["id"] for d in specs if evaluate(f, d)}
        got, total = await _get_all(gateway, f)
        assert (got, total) == (want, len(want)), f
    # The count of a mixed recipient list: each device once, whatever reaches it.
    news = {"channels": {"any": ["news"]}}
    f = {"tag": "plan", "is": "pro"}
    apns = next(b for b in bodies if b["provider"] == "apns")
    recipients = [
        {"type": "filter", "filter": f},
        {"type": "channel", "channel": "news"},
        {"type": "device", "device_id": specs[0]["id"]},
        {"type": "user", "user": "ann"},
        {"type": "token", "provider": "apns", "token": apns["token"]},
        {"type": "token", "provider": "fcm", "token": fcm_token()},  # not registered: no device
    ]
    reached = [
        d
        for d in specs
        if evaluate(f, d)
        or evaluate(news, d)
        or d["id"] == specs[0]["id"]
        or d["user"] == "ann"
        or d["token"] == apns["token"]
    ]
    r = await gateway.client.post("/v1/audience/count", json={"recipients": recipients})
    assert r.status_code == 200, r.text
    assert r.json() == {"devices": len(reached), "users": len({d["user"] for d in reached if d["user"]})}


async def test_app_versions_are_stored_with_their_keys(gateway: Gateway, db: Database) -> None:
    one = (
        await gateway.client.post(
            "/v1/devices",
            json={"provider": "fcm", "token": fcm_token(), "platform": "android", "app_version": "2.9.9"},
        )
    ).json()["device"]
    assert one["app_version"] == "2.9.9"
    [two] = await register_many(
        gateway, [{"provider": "fcm", "token": fcm_token(), "platform": "android", "app_version": "2.10.0"}]
    )
    odd = (
        await gateway.client.post(
            "/v1/devices",
            json={"provider": "fcm", "token": fcm_token(), "platform": "android", "app_version": "nightly"},
        )
    ).json()["device"]
    r = await gateway.client.patch(f"/v1/devices/{one['id']}", json={"app_version": "3.0.0-beta.2"})
    assert r.status_code == 200 and r.json()["device"]["app_version"] == "3.0.0-beta.2"
    async with db.read() as conn:
        rows = {r.id: (r.app_version, r.app_version_key) for r in await conn.execute(sa.select(devices))}
    assert rows[one["id"]] == ("3.0.0-beta.2", version_key("3.0.0-beta.2"))
    assert rows[two["id"]] == ("2.10.0", version_key("2.10.0"))
    assert rows[odd["id"]] == ("nightly", None)  # kept, but no version comparison matches it
    r = await gateway.client.post("/v1/devices/search", json={"filter": {"app_version": {"gte": "2.10.0"}}})
    assert [d["id"] for d in r.json()["items"]] == sorted([one["id"], two["id"]])
    assert "total_count" not in r.json()
    r = await gateway.client.post(
        "/v1/devices/search",
        json={"filter": {"app_version": "present"}, "include_total_count": True, "include": ["tags", "meta"]},
    )
    assert r.json()["total_count"] == 3
    assert [(d["tags"], d["meta"], "channels" in d) for d in r.json()["items"]] == [({}, {}, False)] * 3


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"user": "present"}
    for _ in range(depth - 1):
        node = {"not": node}
    return node


@pytest.mark.parametrize(
    ("bad", "where", "words"),
    [
        (_deep(MAX_DEPTH + 1), "filter" + ".not" * MAX_DEPTH, "nested too deep"),
        ({"any": [{"user": "present"}] * (MAX_NODES + 1)}, f"filter.any[{MAX_NODES - 1}]", "too large"),
        (
            {"all": [{"provider": {"is": "fcm"}}, {"colour": {"is": "red"}}]},
            "filter.all[1].colour",
            "unknown field",
        ),
        ({"app_version": {"gte": "2.10.x"}}, "filter.app_version.gte", "not a version"),
    ],
)
async def test_bad_filters_are_400s_naming_the_place(
    gateway: Gateway, bad: dict[str, Any], where: str, words: str
) -> None:
    import json

    c = gateway.client
    answers = {
        "publish": (
            await c.post(
                "/v1/publish",
                json={"recipients": [{"type": "filter", "filter": bad}], "notification": {"title": "x"}},
            ),
            "recipients[0].",
        ),
        "count": (
            await c.post(
                "/v1/audience/count",
                json={"recipients": [{"type": "user", "user": "u"}, {"type": "filter", "filter": bad}]},
            ),
            "recipients[1].",
        ),
        "search": (await c.post("/v1/devices/search", json={"filter": bad}), ""),
        "get": (await c.get("/v1/devices", params={"filter": json.dumps(bad)}), ""),
    }
    for route, (r, prefix) in answers.items():
        assert r.status_code == 400, (route, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["message"].startswith(prefix + where + ": ") and words in error["message"], (
            route,
            error,
        )


async def test_query_filter_errors(gateway: Gateway) -> None:
    r = await gateway.client.get("/v1/devices", params={"filter": "{not json"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("filter: not JSON")
    # Deeper than the JSON decoder goes (within the 8192 characters of a ?filter=): still a 400.
    r = await gateway.client.get("/v1/devices", params={"filter": "[" * 1000 + "]" * 1000})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("filter: nested too deep")
    r = await gateway.client.get("/v1/devices", params={"filter": '{"user": "present"}', "users": "ann"})
    assert r.status_code == 400 and "alone" in r.json()["error"]["message"]
    r = await gateway.client.post("/v1/devices/search", json={"filter": {"user": "present"}, "sort": "id"})
    assert r.status_code == 400 and "sort" in r.text


async def test_filter_recipient_with_nobody_completes(gateway: Gateway) -> None:
    publish_id = await publish(
        gateway.client, recipients=[{"type": "filter", "filter": {"tag": "nobody", "exists": True}}]
    )
    done = await gateway.wait_done(publish_id)
    assert done["status"] == "completed" and done["counts"]["planned"] == 0, done


async def test_device_stats_count_by_status_provider_platform_locale_and_last_seen(
    gateway: Gateway, db: Database
) -> None:
    bodies = _bodies(40, seed=3)
    listed = await register_many(gateway, bodies)
    now = time.time()
    ages = {d["id"]: days * 86400 + 60 for d, days in zip(listed, [0, 3, 10, 100] * 10, strict=True)}
    invalid = {d["id"] for d in listed[::7]}
    async with db.write() as conn:
        for dev_id, age in ages.items():
            await conn.execute(
                sa.update(devices)
                .where(devices.c.id == dev_id)
                .values(last_seen_at=now - age, status="invalid" if dev_id in invalid else "active")
            )
    r = await gateway.client.get("/v1/stats/devices")
    assert r.status_code == 200, r.text
    stats = r.json()

    def by(field: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for b, d in zip(bodies, listed, strict=True):
            status = "invalid" if d["id"] in invalid else "active"
            key = b.get(field) or ""
            out.setdefault(key, {}).setdefault(status, 0)
            out[key][status] += 1
        return out

    assert stats["by_status"] == dict(Counter("invalid" if d["id"] in invalid else "active" for d in listed))
    assert stats["by_provider"] == by("provider")
    assert stats["by_platform"] == by("platform")
    assert stats["by_locale"] == by("locale")
    buckets = Counter(
        {0: "1d", 3: "7d", 10: "30d", 100: "older"}[int(ages[d["id"]] // 86400)]
        for d in listed
        if d["id"] not in invalid
    )
    assert stats["by_last_seen"] == {name: buckets.get(name, 0) for name in ("1d", "7d", "30d", "older")}
