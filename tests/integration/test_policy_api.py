"""The policy API (docs/policy.md) over HTTP on both databases: the app's policy, categories,
users' preferences and quiet hours, the configuration under them, docs/policy.md's examples as
written, and the planner's two lookups (``opted_out``, ``user_quiet_hours_of``) in a write
transaction of a real database."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from support.gateway import Gateway, gateway_settings, running_gateway

from pushgate.config import ConfigError, load_settings
from pushgate.store.db import Database
from pushgate.store.policies import (
    CategoryExists,
    PolicyStore,
    has_user_quiet_hours,
    opted_out,
    user_quiet_hours_of,
)

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "policy.md"

CONFIG = """
[policy]
default_timezone = "Europe/Paris"

[policy.quiet_hours]
start = "22:00"
end = "07:00"
action = "drop"

[[policy.frequency_caps]]
limit = 3
window_seconds = 86400
category = "marketing"

[[policy.categories]]
id = "marketing"
description = "Deals"
default_opt_in = false

[[policy.categories]]
id = "alerts"

[apps.default.policy]
default_timezone = "Asia/Tokyo"

[[apps.default.policy.categories]]
id = "digest"
description = "Weekly"
"""


def doc_blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), re.S)


async def start(database_url: str, tmp_path: pathlib.Path, toml: str) -> running_gateway:
    path = tmp_path / "pushgate.toml"
    path.write_text(toml)
    # gateway_settings reads the lab's file; these tests send nothing, so theirs stands in.
    return running_gateway(gateway_settings(database_url, SimpleNamespace(toml=path)))  # type: ignore[arg-type]


@pytest.fixture
async def gw(database_url: str, tmp_path: pathlib.Path) -> AsyncIterator[Gateway]:
    async with await start(database_url, tmp_path, CONFIG) as gateway:
        yield gateway


async def create_key(gateway: Gateway, *scopes: str) -> str:
    r = await gateway.client.post("/v1/keys", json={"name": "+".join(scopes), "scopes": list(scopes)})
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


def error(r: Any, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == {400: "invalid_request", 404: "not_found", 409: "conflict"}[status]
    return str(body["error"]["message"])


# -- docs/policy.md ----------------------------------------------------------------------------


def doc_exchanges() -> list[tuple[str, str, Any, int, Any]]:
    """``(method, path, body, status, answer)`` for each request block and the response after it."""
    out = []
    blocks = doc_blocks("http")
    for request, response in zip(blocks[::2], blocks[1::2], strict=True):
        head, _, body = request.partition("\n\n")
        method, path = head.split()
        status_line, _, answer = response.partition("\n\n")
        assert status_line.startswith("HTTP/1.1 "), status_line
        out.append(
            (
                method,
                path,
                json.loads(body) if body.strip() else None,
                int(status_line.split()[1]),
                json.loads(answer) if answer.strip() else None,
            )
        )
    return out


async def test_the_docs_examples_answer_as_written(database_url: str, tmp_path: pathlib.Path) -> None:
    (toml,) = doc_blocks("toml")
    exchanges = doc_exchanges()
    assert len(exchanges) >= 20
    async with await start(database_url, tmp_path, toml) as gateway:
        for method, path, body, status, answer in exchanges:
            r = await gateway.client.request(method, path, json=body)
            assert (r.status_code, r.json() if r.content else None) == (status, answer), (method, path)


def test_the_docs_toml_is_the_configuration_it_describes(tmp_path: pathlib.Path) -> None:
    (toml,) = doc_blocks("toml")
    path = tmp_path / "p.toml"
    path.write_text(toml)
    s = load_settings(path, env={})
    shop = s.policy_config("app_x", "shop")
    assert shop["default_timezone"] == "America/New_York"
    assert shop["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": None, "action": "defer"}
    assert [c["id"] for c in shop["categories"]] == ["marketing", "transactional"]
    assert s.policy_config("app_y", "other")["default_timezone"] == "UTC"


# -- the app's policy --------------------------------------------------------------------------


async def test_the_configured_policy_applies_until_the_api_replaces_it(gw: Gateway) -> None:
    r = await gw.client.get("/v1/policy")
    assert r.status_code == 200, r.text
    configured = {
        "source": "config",
        "policy": {
            # [apps.default.policy] replaces [policy]'s zone; the rest is [policy]'s.
            "default_timezone": "Asia/Tokyo",
            "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": None, "action": "drop"},
            "frequency_caps": [
                {
                    "limit": 3,
                    "window_seconds": 86400,
                    "per": "user",
                    "category": "marketing",
                    "action": "drop",
                }
            ],
        },
    }
    assert r.json() == configured
    mine: dict[str, Any] = {
        "default_timezone": "America/Sao_Paulo",
        "quiet_hours": None,
        "frequency_caps": [],
    }
    put = await gw.client.put("/v1/policy", json=mine)
    assert put.status_code == 200, put.text
    assert put.json() == {"source": "api", "policy": mine}
    assert (await gw.client.get("/v1/policy")).json() == {"source": "api", "policy": mine}
    # A full replace: keys left out take their defaults, not the previous values.
    put = await gw.client.put("/v1/policy", json={"quiet_hours": {"start": "01:00", "end": "02:00:30"}})
    assert put.json()["policy"] == {
        "default_timezone": "UTC",
        "quiet_hours": {"start": "01:00", "end": "02:00:30", "timezone": None, "action": "defer"},
        "frequency_caps": [],
    }
    gone = await gw.client.delete("/v1/policy")
    assert gone.status_code == 200 and gone.json() == configured
    assert (await gw.client.get("/v1/policy")).json() == configured
    assert (await gw.client.delete("/v1/policy")).json() == configured  # nothing left to delete


BAD_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"default_timezone": "Mars/Olympus"}, "default_timezone: 'Mars/Olympus' is not an IANA time zone"),
    (
        {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Pariss"}},
        "quiet_hours.timezone:",
    ),
    ({"quiet_hours": {"start": "22:00", "end": "22:00:00"}}, "quiet_hours.end: must differ from start"),
    ({"quiet_hours": {"start": "24:00", "end": "07:00"}}, "quiet_hours.start:"),
    ({"quiet_hours": {"start": "7:00", "end": "08:00"}}, "quiet_hours.start:"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00", "action": "mute"}}, "quiet_hours.action:"),
    ({"frequency_caps": [{"limit": 0, "window_seconds": 60}]}, "frequency_caps[0].limit:"),
    ({"frequency_caps": [{"limit": 1, "window_seconds": 60, "per": "team"}]}, "frequency_caps[0].per:"),
    (
        {"frequency_caps": [{"limit": 1, "window_seconds": 60, "category": "a b"}]},
        "frequency_caps[0].category:",
    ),
    ({"timezone": "UTC"}, "Object contains unknown field `timezone`"),
]


async def test_a_bad_policy_is_a_400_naming_the_field(gw: Gateway) -> None:
    for body, where in BAD_POLICIES:
        assert where in error(await gw.client.put("/v1/policy", json=body), 400), body
    assert (await gw.client.get("/v1/policy")).json()["source"] == "config"


# -- categories --------------------------------------------------------------------------------


async def test_configured_categories_are_listed_and_the_api_overrides_them(gw: Gateway) -> None:
    items = (await gw.client.get("/v1/categories")).json()["items"]
    assert items == [
        {"id": "alerts", "description": "", "default_opt_in": True, "source": "config"},
        {"id": "digest", "description": "Weekly", "default_opt_in": True, "source": "config"},
        {"id": "marketing", "description": "Deals", "default_opt_in": False, "source": "config"},
    ]
    # The configured id exists: POST is a conflict, PUT overrides it.
    assert "already exists" in error(await gw.client.post("/v1/categories", json={"id": "marketing"}), 409)
    r = await gw.client.put(
        "/v1/categories/marketing", json={"description": "Offers", "default_opt_in": True}
    )
    assert r.status_code == 200, r.text
    override = {"id": "marketing", "description": "Offers", "default_opt_in": True, "source": "api"}
    assert r.json() == override
    assert (await gw.client.get("/v1/categories/marketing")).json() == override
    assert override in (await gw.client.get("/v1/categories")).json()["items"]
    # Deleting the override shows the configuration's again; the configured one cannot go.
    assert (await gw.client.delete("/v1/categories/marketing")).status_code == 204
    assert (await gw.client.get("/v1/categories/marketing")).json()["source"] == "config"
    assert "configuration" in error(await gw.client.delete("/v1/categories/marketing"), 409)


async def test_categories_created_changed_and_deleted(gw: Gateway) -> None:
    r = await gw.client.post(
        "/v1/categories", json={"id": "news", "description": "Daily", "default_opt_in": False}
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "news", "description": "Daily", "default_opt_in": False, "source": "api"}
    assert "'news' already exists" in error(await gw.client.post("/v1/categories", json={"id": "news"}), 409)
    assert (await gw.client.get("/v1/categories/news")).json()["default_opt_in"] is False
    r = await gw.client.put("/v1/categories/news", json={"default_opt_in": True})
    assert r.json() == {"id": "news", "description": "", "default_opt_in": True, "source": "api"}
    assert (await gw.client.delete("/v1/categories/news")).status_code == 204
    assert "category 'news' not found" in error(await gw.client.get("/v1/categories/news"), 404)
    error(await gw.client.delete("/v1/categories/news"), 404)
    error(await gw.client.put("/v1/categories/news", json={}), 404)
    assert "news" not in [c["id"] for c in (await gw.client.get("/v1/categories")).json()["items"]]
    # The same id created twice at once: one is created, the other is a conflict.
    both = await asyncio.gather(*(gw.client.post("/v1/categories", json={"id": "race"}) for _ in range(2)))
    assert sorted(r.status_code for r in both) == [201, 409], [r.text for r in both]


BAD_CATEGORIES: list[tuple[dict[str, Any], str]] = [
    ({"id": "has space"}, "id:"),
    ({"id": ""}, "id:"),
    ({"id": "x" * 65}, "id:"),
    ({"description": "no id"}, "id"),
    ({"id": "ok", "default_opt_in": "yes"}, "default_opt_in:"),
    ({"id": "ok", "description": "d" * 501}, "description:"),
]


async def test_a_bad_category_is_a_400(gw: Gateway) -> None:
    for body, where in BAD_CATEGORIES:
        assert where in error(await gw.client.post("/v1/categories", json=body), 400), body
    assert "ok" not in [c["id"] for c in (await gw.client.get("/v1/categories")).json()["items"]]


# -- preferences -------------------------------------------------------------------------------


async def test_preferences_show_every_category_with_the_users_choice_or_its_default(gw: Gateway) -> None:
    defaults = {"alerts": True, "digest": True, "marketing": False}
    r = await gw.client.get("/v1/users/u1/preferences")
    assert r.status_code == 200, r.text
    assert r.json() == {"user": "u1", "categories": defaults, "explicit": []}
    r = await gw.client.put(
        "/v1/users/u1/preferences", json={"categories": {"marketing": True, "alerts": False}}
    )
    assert r.status_code == 200, r.text
    mine: dict[str, Any] = {
        "user": "u1",
        "categories": {**defaults, "marketing": True, "alerts": False},
        "explicit": ["alerts", "marketing"],
    }
    assert r.json() == mine
    # Only the categories named change.
    r = await gw.client.put("/v1/users/u1/preferences", json={"categories": {"digest": False}})
    mine = {
        **mine,
        "categories": {**mine["categories"], "digest": False},
        "explicit": ["alerts", "digest", "marketing"],
    }
    assert r.json() == mine
    # An unknown category refuses the whole request.
    message = error(
        await gw.client.put(
            "/v1/users/u1/preferences", json={"categories": {"alerts": True, "promos": False}}
        ),
        400,
    )
    assert "unknown category 'promos'" in message
    assert (await gw.client.get("/v1/users/u1/preferences")).json() == mine
    # One category at a time, and forgetting a choice.
    r = await gw.client.put("/v1/users/u1/preferences/alerts", json={"opted_in": True})
    assert r.status_code == 200 and r.json()["categories"]["alerts"] is True
    r = await gw.client.delete("/v1/users/u1/preferences/marketing")
    assert r.status_code == 200
    assert r.json() == {
        "user": "u1",
        "categories": {**defaults, "digest": False},
        "explicit": ["alerts", "digest"],
    }
    assert "category 'promos' not found" in error(
        await gw.client.put("/v1/users/u1/preferences/promos", json={"opted_in": True}), 404
    )
    # Another user is untouched; a category created later shows with its default.
    await gw.client.post("/v1/categories", json={"id": "news", "default_opt_in": False})
    other = (await gw.client.get("/v1/users/u2/preferences")).json()
    assert other == {"user": "u2", "categories": {**defaults, "news": False}, "explicit": []}


BAD_PREFERENCES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/users/u1/preferences", {"categories": {"alerts": "no"}}, "categories"),
    ("/v1/users/u1/preferences", {"categories": {"bad id": True}}, "categories"),
    ("/v1/users/u1/preferences", {}, "categories"),
    ("/v1/users/u1/preferences/alerts", {"opted_in": 1}, "opted_in"),
    ("/v1/users/u1/preferences/alerts", {}, "opted_in"),
    (f"/v1/users/{'u' * 201}/preferences", {"categories": {}}, "user: must be 1-200 characters"),
]


async def test_a_bad_preference_is_a_400(gw: Gateway) -> None:
    for path, body, where in BAD_PREFERENCES:
        assert where in error(await gw.client.put(path, json=body), 400), (path, body)
    assert (await gw.client.get("/v1/users/u1/preferences")).json()["explicit"] == []


# -- quiet hours -------------------------------------------------------------------------------


async def test_a_users_quiet_hours(gw: Gateway) -> None:
    assert "quiet hours of user 'u1' not found" in error(await gw.client.get("/v1/users/u1/quiet_hours"), 404)
    error(await gw.client.delete("/v1/users/u1/quiet_hours"), 404)
    r = await gw.client.put("/v1/users/u1/quiet_hours", json={"start": "21:00", "end": "06:30"})
    assert r.status_code == 200, r.text
    stored = {"start": "21:00", "end": "06:30", "timezone": None, "action": "defer"}
    assert r.json() == {"user": "u1", "quiet_hours": stored}
    assert (await gw.client.get("/v1/users/u1/quiet_hours")).json() == {"user": "u1", "quiet_hours": stored}
    replaced = {"start": "12:00", "end": "13:00:00", "timezone": "Asia/Kolkata", "action": "drop"}
    assert (await gw.client.put("/v1/users/u1/quiet_hours", json=replaced)).json()["quiet_hours"] == replaced
    error(await gw.client.get("/v1/users/u2/quiet_hours"), 404)
    assert (await gw.client.delete("/v1/users/u1/quiet_hours")).status_code == 204
    error(await gw.client.get("/v1/users/u1/quiet_hours"), 404)


BAD_QUIET_HOURS: list[tuple[dict[str, Any], str]] = [
    (
        {"start": "22:00", "end": "07:00", "timezone": "Nowhere/Town"},
        "timezone: 'Nowhere/Town' is not an IANA",
    ),
    ({"start": "22:00", "end": "07:00", "timezone": ""}, "timezone:"),
    ({"start": "22:00", "end": "22:00"}, "end: must differ from start"),
    ({"start": "22:60", "end": "07:00"}, "start:"),
    ({"start": "22:00", "end": "7"}, "end:"),
    ({"start": "22:00"}, "end"),
    ({"start": "22:00", "end": "07:00", "action": "later"}, "action:"),
]


async def test_bad_quiet_hours_are_a_400_naming_the_field(gw: Gateway) -> None:
    for body, where in BAD_QUIET_HOURS:
        assert where in error(await gw.client.put("/v1/users/u1/quiet_hours", json=body), 400), body
    error(await gw.client.get("/v1/users/u1/quiet_hours"), 404)


# -- scopes ------------------------------------------------------------------------------------


async def test_reads_need_read_the_app_policy_admin_and_a_users_choices_register(gw: Gateway) -> None:
    reader = await create_key(gw, "read")
    registrar = await create_key(gw, "register")
    prefs = {"categories": {"alerts": False}}
    quiet = {"start": "22:00", "end": "07:00"}
    async with gw.as_app(reader) as read, gw.as_app(registrar) as reg:
        for path in ("/v1/policy", "/v1/categories", "/v1/categories/alerts", "/v1/users/u1/preferences"):
            assert (await read.get(path)).status_code == 200, path
        for method, path, body in [
            ("PUT", "/v1/policy", {}),
            ("DELETE", "/v1/policy", None),
            ("POST", "/v1/categories", {"id": "x"}),
            ("PUT", "/v1/categories/alerts", {}),
            ("DELETE", "/v1/categories/alerts", None),
        ]:
            for client in (read, reg):
                r = await client.request(method, path, json=body)
                assert r.status_code == 403 and "needs the admin scope" in r.text, (method, path)
        assert (await read.put("/v1/users/u1/preferences", json=prefs)).status_code == 403
        assert (await read.put("/v1/users/u1/quiet_hours", json=quiet)).status_code == 403
        assert (await reg.put("/v1/users/u1/preferences", json=prefs)).status_code == 200
        assert (await reg.put("/v1/users/u1/quiet_hours", json=quiet)).status_code == 200
    assert (await gw.client.get("/v1/categories/x")).status_code == 404  # nothing a 403 wrote


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[policy]\ndefault_timezone = "Mars/X"',
            "policy: default_timezone: 'Mars/X' is not an IANA time zone",
        ),
        (
            '[policy.quiet_hours]\nstart = "22:00"\nend = "22:00"',
            "policy.quiet_hours: start and end must differ",
        ),
        ('[policy.quiet_hours]\nstart = "25:00"\nend = "07:00"', "policy.quiet_hours.start"),
        (
            '[apps.shop.policy.quiet_hours]\nstart = "1:00"\nend = "2:00"\ntimezone = "Utopia"',
            "apps.shop.policy.quiet_hours.start",
        ),
        ('[apps.shop.policy.quiet_hours]\nstart = "01:00"\nend = "02:00"\ntimezone = "Utopia"', "'Utopia'"),
        ('[[policy.categories]]\nid = "a b"', "policy.categories[0].id"),
        ("[[policy.frequency_caps]]\nlimit = 0\nwindow_seconds = 60", "policy.frequency_caps[0].limit"),
        ("[policy]\nquiet = 1", "policy.quiet: unknown key"),
    ],
)
def test_a_bad_policy_section_stops_the_start_naming_the_key(
    tmp_path: pathlib.Path, toml: str, message: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert message in str(caught.value)


def test_an_apps_policy_section_replaces_the_global_keys_it_gives(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        CONFIG
        + '\n[apps.shop.policy]\nfrequency_caps = []\n[[apps.shop.policy.categories]]\nid = "marketing"\n'
    )
    s = load_settings(path, env={"PUSHGATE_POLICY_DEFAULT_TIMEZONE": "Europe/Lisbon"})
    assert s.policy.default_timezone == "Europe/Lisbon"
    shop = s.policy_config("app_1", "shop")
    assert shop["default_timezone"] == "Europe/Lisbon"
    assert shop["frequency_caps"] == [] and shop["quiet_hours"]["action"] == "drop"
    by_id = {c["id"]: c for c in shop["categories"]}
    assert sorted(by_id) == ["alerts", "marketing"] and by_id["marketing"]["default_opt_in"] is True
    # The section may name the app by id too.
    assert s.policy_config("default", "some_name")["default_timezone"] == "Asia/Tokyo"


# -- the planner's lookups ---------------------------------------------------------------------


async def test_opted_out_in_a_write_transaction(db: Database) -> None:
    store = PolicyStore(db)
    users = [f"user{i:04d}" for i in range(1200)]  # more than one query's worth
    await store.set_preferences("app_a", "user0001", {"marketing": False, "news": True})
    await store.set_preferences("app_a", "user0002", {"marketing": True})
    await store.set_preference("app_a", "user0999", "marketing", False)
    await store.set_preference("app_a", "user1100", "marketing", True)
    await store.set_preference("app_b", "user0003", "marketing", False)  # another app's
    async with db.write() as conn:
        out_by_default_in = await opted_out(conn, "app_a", "marketing", [*users, "user0001"], True)
        out_by_default_out = await opted_out(conn, "app_a", "marketing", users, False)
        news = await opted_out(conn, "app_a", "news", ["user0001", "user0002"], False)
        none = await opted_out(conn, "app_a", "marketing", [], False)
    assert out_by_default_in == {"user0001", "user0999"}
    assert out_by_default_out == set(users) - {"user0002", "user1100"}
    assert news == {"user0002"} and none == set()
    # A choice changed later is read again (nothing cached).
    await store.set_preference("app_a", "user0001", "marketing", True)
    async with db.write() as conn:
        assert await opted_out(conn, "app_a", "marketing", ["user0001", "user0999"], True) == {"user0999"}


async def test_user_quiet_hours_of_in_a_write_transaction(db: Database) -> None:
    store = PolicyStore(db)
    body = {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris", "action": "drop"}
    other = {"start": "01:00", "end": "02:00", "timezone": None, "action": "defer"}
    await store.put_user_quiet_hours("app_a", "ann", body)
    await store.put_user_quiet_hours("app_a", "bob", {**body, "action": "defer"})
    await store.put_user_quiet_hours("app_a", "bob", other)  # replaced
    await store.put_user_quiet_hours("app_b", "cid", body)
    async with db.write() as conn:
        assert await user_quiet_hours_of(conn, "app_a", ["ann", "bob", "cid", "ann"]) == {
            "ann": body,
            "bob": other,
        }
        assert await user_quiet_hours_of(conn, "app_a", []) == {}
        assert await has_user_quiet_hours(conn, "app_a") and not await has_user_quiet_hours(conn, "app_c")
    assert await store.delete_user_quiet_hours("app_a", "ann")
    assert not await store.delete_user_quiet_hours("app_a", "ann")
    async with db.write() as conn:
        assert await user_quiet_hours_of(conn, "app_a", ["ann", "bob"]) == {"bob": other}


async def test_category_default_reads_the_table_over_the_configuration(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def configured(app_id: str, app_name: str) -> dict[str, Any]:
        assert app_name == app_id  # no such app in the table: its id stands in for its name
        return {"categories": [{"id": "marketing", "description": "", "default_opt_in": False}]}

    mine, other_process = PolicyStore(db, configured), PolicyStore(db, configured)
    async with db.write() as conn:
        assert await mine.category_default("app_a", "marketing", conn) is False
        assert await mine.category_default("app_a", "news", conn) is None
    # Another process's new category is seen once this one's snapshot expires (or it writes).
    await other_process.create_category("app_a", "news", "", False)
    assert await mine.category_default("app_a", "news") is None
    await mine.update_category("app_a", "marketing", "", True)
    assert await mine.category_default("app_a", "marketing") is True
    assert await mine.category_default("app_a", "news") is False
    with pytest.raises(CategoryExists):
        await mine.create_category("app_a", "marketing", "", True)
    monkeypatch.setattr("pushgate.store.policies.SNAPSHOT_SECONDS", 0.0)
    assert await other_process.delete_category("app_a", "news")
    assert await mine.category_default("app_a", "news") is None
    assert await other_process.delete_category("app_a", "marketing")  # the override only
    assert await mine.category_default("app_a", "marketing") is False


def test_the_configuration_pages_policy_example_loads(tmp_path: pathlib.Path) -> None:
    page = DOC.with_name("configuration.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", page, re.S) if b.startswith("[policy]")]
    path = tmp_path / "p.toml"
    path.write_text(block)
    s = load_settings(path, env={})
    assert s.policy_config("app_1", "shop")["frequency_caps"] == []
    default = s.policy_config("app_2", "default")
    assert default["default_timezone"] == "Europe/Paris" and default["frequency_caps"][0]["limit"] == 3
    assert default["categories"] == [
        {"id": "marketing", "description": "Deals and offers", "default_opt_in": False}
    ]


async def test_the_cached_policy_is_the_tables_over_the_configuration(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured: dict[str, Any] = {"default_timezone": "Asia/Tokyo", "quiet_hours": None, "frequency_caps": []}
    mine = PolicyStore(db, lambda _id, _name: {**configured, "categories": []})
    other_process = PolicyStore(db, lambda _id, _name: {})
    assert await mine.cached_policy("app_a") == (configured, "config")
    assert await mine.get_app_policy("app_a") is None
    set_elsewhere: dict[str, Any] = {"default_timezone": "UTC", "quiet_hours": None, "frequency_caps": []}
    await other_process.put_app_policy("app_a", set_elsewhere)
    assert await mine.cached_policy("app_a") == (configured, "config")  # within the snapshot
    assert await mine.effective_policy("app_a") == (set_elsewhere, "api")  # never cached
    monkeypatch.setattr("pushgate.store.policies.SNAPSHOT_SECONDS", 0.0)  # from here on: none
    mine_now = {**set_elsewhere, "default_timezone": "Europe/Oslo"}
    await mine.put_app_policy("app_a", mine_now)
    async with db.write() as conn:
        assert await mine.cached_policy("app_a", conn) == (mine_now, "api")
    assert await other_process.delete_app_policy("app_a")
    assert not await other_process.delete_app_policy("app_a")
    assert await mine.cached_policy("app_a") == (configured, "config")
