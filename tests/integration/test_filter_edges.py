"""Edges of the filter language (review of issue 12, findings 3, 4, 8 and 11), on both databases:
``not`` over devices whose field is empty, ``language`` over locales written with ``_``, one
budget for all the filters of a request (counts and publishes), and the listing's inputs that
``filter`` cannot be combined with. Every answer is held to the independent evaluator
(``support/filters.py``)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from support.api import fcm_token
from support.bulk import register_many
from support.filters import evaluate
from support.gateway import Gateway

from pushgate.domain.filters import MAX_LIST, MAX_NODES, MAX_REQUEST_NODES, MAX_REQUEST_VALUES, MAX_VALUES

#: Devices with every nullable field empty (no user, time zone, locale, meta, app version), and
#: some with each set, including locales written with ``_``.
_FIELDS: list[dict[str, Any]] = [
    {},
    {},
    {"user": "u1"},
    {"user": "u2", "timezone": "Europe/Berlin"},
    {"timezone": "America/New_York", "locale": "de"},
    {"locale": "pt_BR", "meta": {"team": "red"}},
    {"locale": "PT_br", "app_version": "2.10.0"},
    {"locale": "pt-PT", "app_version": "nightly"},
    {"locale": "ptx_Y", "meta": {"team": "blue"}},
    {"locale": "pt", "app_version": "2.9.9", "user": "u1"},
]


def _bodies() -> list[dict[str, Any]]:
    return [{"provider": "fcm", "token": fcm_token(), "platform": "android", **f} for f in _FIELDS]


def _spec(body: dict[str, Any], listed: dict[str, Any]) -> dict[str, Any]:
    """What the evaluator reads: an empty field is ``None``, as a registration leaves it."""
    spec = {k: body.get(k) for k in ("user", "locale", "timezone", "app_version", "meta")}
    return {**body, **spec, "id": listed["id"], "tags": {}, "channels": []}


async def _matches(gw: Gateway, f: dict[str, Any]) -> tuple[set[str], int, int]:
    """(ids of GET /v1/devices?filter=, its total_count, POST /v1/audience/count's devices)."""
    r = await gw.client.get(
        "/v1/devices", params={"filter": json.dumps(f), "limit": 100, "include_total_count": "true"}
    )
    assert r.status_code == 200, r.text
    page = r.json()
    c = await gw.client.post("/v1/audience/count", json={"recipients": [{"type": "filter", "filter": f}]})
    assert c.status_code == 200, c.text
    return {d["id"] for d in page["items"]}, page["total_count"], c.json()["devices"]


async def test_not_keeps_devices_whose_field_is_empty(gateway: Gateway) -> None:
    """Finding 3: ``NOT`` of a comparison with a NULL column is NULL in SQL; the language says a
    leaf on an empty field is false, so its ``not`` is true."""
    bodies = _bodies()
    specs = [_spec(b, d) for b, d in zip(bodies, await register_many(gateway, bodies), strict=True)]
    leaves: list[dict[str, Any]] = [
        {"user": {"is": "u1"}},
        {"user": {"in": ["u1", "u2"]}},
        {"timezone": {"is": "Europe/Berlin"}},
        {"locale": {"is": "de"}},
        {"locale": {"in": ["de", "pt"]}},
        {"language": {"is": "pt"}},
        {"language": {"in": ["de", "pt"]}},
        {"meta": "team", "is": "red"},
        {"app_version": {"gte": "2.10.0"}},
        {"app_version": {"is": "2.9.9"}},
        {"app_version": {"lt": "2.10.0"}},
        {"all": [{"user": {"is": "u1"}}, {"locale": {"is": "pt"}}]},
        {"any": [{"user": {"is": "u2"}}, {"meta": "team", "is": "blue"}]},
    ]
    for leaf in leaves:
        for f in (
            {"not": leaf},
            {"not": {"not": leaf}},
            {"all": [{"provider": {"is": "fcm"}}, {"not": leaf}]},
        ):
            want = {d["id"] for d in specs if evaluate(f, d)}
            assert await _matches(gateway, f) == (want, len(want), len(want)), f
    # The reviewer's example: three devices without a user or time zone.
    assert len({d["id"] for d in specs if evaluate({"not": {"user": {"is": "u1"}}}, d)}) == 8


async def test_language_matches_locales_written_with_underscores(gateway: Gateway) -> None:
    """Finding 11: ``pt`` matches ``pt``, ``pt_BR``, ``PT_br`` and ``pt-PT``; not ``ptx_Y``."""
    bodies = _bodies()
    specs = [_spec(b, d) for b, d in zip(bodies, await register_many(gateway, bodies), strict=True)]
    by_locale = {d["locale"]: d["id"] for d in specs if d["locale"]}
    want = {by_locale[k] for k in ("pt_BR", "PT_br", "pt-PT", "pt")}
    assert {d["id"] for d in specs if evaluate({"language": {"is": "pt"}}, d)} == want
    for f in ({"language": {"is": "pt"}}, {"language": {"in": ["PT", "xx"]}}):
        assert await _matches(gateway, f) == (want, 4, 4), f
    r = await gateway.client.post("/v1/devices/search", json={"filter": {"language": {"is": "pt"}}})
    assert {d["id"] for d in r.json()["items"]} == want


def _langs(n: int, start: int = 0) -> list[str]:
    """``n`` distinct language codes (letters only)."""
    out = []
    for i in range(start, start + n):
        code = ""
        for _ in range(3):
            code += chr(ord("a") + i % 26)
            i //= 26
        out.append(code + "q")
    return out


async def test_one_budget_across_a_recipient_list(gateway: Gateway) -> None:
    """Finding 4: the limits hold for all the filters of one request together (a clear 400, not
    a 500 past PostgreSQL's bind parameters or SQLite's expression depth), and a request at the
    limits, with 1000 recipients, is counted right on both databases."""
    bodies = _bodies()
    bodies[0]["channels"] = ["c1"]
    bodies[1]["tags"] = {"t": "v5"}
    specs = [_spec(b, d) for b, d in zip(bodies, await register_many(gateway, bodies), strict=True)]
    specs[0]["channels"], specs[1]["tags"] = ["c1"], {"t": "v5"}
    # The reviewer's case: 17 filters of 2000 values each.
    wide = {
        "any": [
            {"user": {"in": [f"u{i}" for i in range(k, k + MAX_LIST)]}}
            for k in range(0, MAX_VALUES, MAX_LIST)
        ]
    }
    too_many = [{"type": "filter", "filter": wide} for _ in range(17)]
    k = MAX_REQUEST_VALUES // MAX_VALUES  # the first filter past the request's values
    for path, body in (
        ("/v1/audience/count", {"recipients": too_many}),
        ("/v1/publish", {"recipients": too_many, "notification": {"title": "x"}}),
    ):
        r = await gateway.client.post(path, json=body)
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert message.startswith(f"recipients[{k}].filter.any[0].user.in: too large"), message
        assert f"at most {MAX_REQUEST_VALUES} list values in all the filters of one request" in message
    full = {"any": [{"user": "present"}] * (MAX_NODES - 1)}
    many_nodes = [{"type": "filter", "filter": full} for _ in range(MAX_REQUEST_NODES // MAX_NODES + 1)]
    r = await gateway.client.post("/v1/audience/count", json={"recipients": many_nodes})
    assert r.status_code == 400, r.text
    assert f"at most {MAX_REQUEST_NODES} conditions in all the filters of one request" in r.text
    # At the limits: every list value and condition a request may have, the rest of the 1000
    # recipients of other kinds.
    filters: list[dict[str, Any]] = [
        {"any": [{"language": {"in": _langs(MAX_LIST, k)}} for k in range(0, MAX_VALUES, MAX_LIST)]},
        {
            "any": [
                {"channels": {"all": ["c1", *_langs(MAX_LIST - 1, k)]}}
                for k in range(0, MAX_VALUES, MAX_LIST)
            ]
        },
    ]
    filters[0]["any"].append({"language": {"is": "de"}})
    used_values = sum(
        len(x[f][op]) for g in filters for x in g["any"] for f in x for op in x[f] if op != "is"
    )
    assert used_values == MAX_REQUEST_VALUES
    left = MAX_REQUEST_NODES - sum(1 + len(g["any"]) for g in filters)
    filters.append({"any": [{"tag": "t", "is": f"v{i}"} for i in range(MAX_NODES - 1)]})
    filters.append({"any": [{"meta": "team", "is": f"v{i}"} for i in range(left - MAX_NODES - 1)]})
    recipients: list[dict[str, Any]] = [{"type": "filter", "filter": f} for f in filters]
    recipients += [{"type": "user", "user": f"x{i}"} for i in range(300)] + [{"type": "user", "user": "u2"}]
    recipients += [{"type": "device", "device_id": f"dev_{i}"} for i in range(300)]
    recipients += [{"type": "token", "provider": "fcm", "token": fcm_token()} for _ in range(200)]
    recipients += [
        {"type": "channel", "channel": f"ch{secrets.token_hex(4)}"} for _ in range(1000 - len(recipients) - 2)
    ]
    recipients += [{"type": "device", "device_id": specs[9]["id"]}, {"type": "channel", "channel": "c1"}]
    assert len(recipients) == 1000
    reached = [
        d
        for d in specs
        if any(evaluate(f, d) for f in filters)
        or d["user"] == "u2"
        or d["id"] == specs[9]["id"]
        or "c1" in d["channels"]
    ]
    assert len(reached) == 5  # de, u2, channel c1, tag t=v5, the device
    r = await gateway.client.post("/v1/audience/count", json={"recipients": recipients})
    assert r.status_code == 200, r.text
    assert r.json() == {"devices": len(reached), "users": len({d["user"] for d in reached if d["user"]})}


async def test_listing_inputs_that_would_be_ignored_are_400s(gateway: Gateway) -> None:
    """Finding 8: ``include_total_count`` without ``filter``, and ``tag.*`` with ``filter``."""
    c = gateway.client
    r = await c.get("/v1/devices", params={"include_total_count": "true"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith("include_total_count: ")
    r = await c.get("/v1/devices", params={"filter": '{"user": "present"}', "tag.plan": "pro"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith("tag.plan: ")
    # Still accepted: false without a filter, and tag.* without one.
    r = await c.get("/v1/devices", params={"include_total_count": "false", "tag.plan": "pro"})
    assert r.status_code == 200 and "total_count" not in r.json(), r.text
