"""The audience filter language without a database: parsing, the limits, version keys."""

from __future__ import annotations

from typing import Any

import pytest

from pushgate.domain.filters import (
    MAX_DEPTH,
    MAX_LIST,
    MAX_NODES,
    FilterError,
    Group,
    Leaf,
    Not,
    parse,
    version_key,
)


def _key(v: str) -> str:
    k = version_key(v)
    assert k is not None, v
    return k


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("2.9.9", "2.10.0"),
        ("2.10.0", "2.10.1"),
        ("1.99999999", "2.0"),
        ("2.10.0-rc.1", "2.10.0"),
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
        ("1.0.0-beta.2", "1.0.0-beta.11"),
        ("1.0.0-beta.11", "1.0.0-rc.1"),
        ("9.9", "10"),
        ("2.10.0", "2.10.0.1"),
    ],
)
def test_version_keys_sort_like_versions(low: str, high: str) -> None:
    assert _key(low) < _key(high)
    assert _key(low).isdigit() and _key(high).isdigit()  # digits only: every collation agrees


@pytest.mark.parametrize(
    ("a", "b"), [("2.10", "2.10.0"), ("v2.10.0", "2.10.0"), ("2.10.0+build.7", "2.10.0")]
)
def test_equal_versions_have_equal_keys(a: str, b: str) -> None:
    assert _key(a) == _key(b)


@pytest.mark.parametrize("bad", ["", "banana", "2..1", "1.2.3.4.5", "123456789.0", "2.10.0-", "2.10 beta"])
def test_non_versions_have_no_key(bad: str) -> None:
    assert version_key(bad) is None


def test_the_acceptance_filter_parses_to_its_tree() -> None:
    node = parse(
        {
            "all": [
                {"provider": {"in": ["fcm", "apns"]}},
                {"tag": "plan", "is": "pro"},
                {"app_version": {"gte": "2.10.0"}},
                {"not": {"user": "absent"}},
            ]
        }
    )
    assert node == Group(
        "all",
        (
            Leaf("provider", "in", ("fcm", "apns")),
            Leaf("tag", "is", "pro", "plan"),
            Leaf("app_version", "gte", _key("2.10.0")),
            Not(Leaf("user", "absent")),
        ),
    )


def test_every_leaf_shape_parses() -> None:
    shapes: list[dict[str, Any]] = [
        {"provider": {"is": "fcm"}},
        {"platform": {"in": ["ios", "android"]}},
        {"user": "present"},
        {"user": {"in": ["u1", "u2"]}},
        {"channels": {"any": ["news"]}},
        {"channels": {"all": ["news", "sport"]}},
        {"tag": "plan", "in": ["pro", "team"]},
        {"tag": "plan", "exists": False},
        {"tag": "plan", "not": "free"},
        {"meta": "name", "is": "Ann"},
        {"meta": "name", "exists": True},
        {"locale": {"is": "pt-BR"}},
        {"locale": "absent"},
        {"language": {"in": ["PT", "de"]}},
        {"timezone": {"is": "Europe/Berlin"}},
        {"app_version": {"lt": "3"}},
        {"app_version": "present"},
        {"last_seen": {"after": "2026-01-01T00:00:00Z"}},
        {"created": {"before": "2026-01-01T00:00:00+01:00", "after": "2025-01-01T00:00:00Z"}},
    ]
    for shape in shapes:
        assert isinstance(parse(shape), Leaf), shape
    assert parse({"language": {"in": ["PT", "de"]}}) == Leaf("language", "in", ("pt", "de"))
    assert parse({"created": {"after": "1970-01-01T00:01:00Z"}}) == Leaf("created", "range", (60.0, None))


def _error(raw: Any) -> FilterError:
    with pytest.raises(FilterError) as info:
        parse(raw, "filter")
    return info.value


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"provider": {"is": "fcm"}}
    for _ in range(depth - 1):
        node = {"not": node}
    return node


def test_depth_limit_names_the_place() -> None:
    parse(_nested(MAX_DEPTH))
    err = _error(_nested(MAX_DEPTH + 1))
    assert err.path == "filter" + ".not" * MAX_DEPTH
    assert "nested too deep" in err.message


def test_size_limits() -> None:
    err = _error({"any": [{"user": "present"}] * MAX_NODES})
    assert err.path == f"filter.any[{MAX_NODES - 1}]" and "too large" in err.message
    err = _error({"provider": {"in": ["fcm"] * (MAX_LIST + 1)}})
    assert err.path == "filter.provider.in" and "too long" in err.message
    err = _error({"any": [{"user": {"in": ["u"] * MAX_LIST}}] * 5})
    assert err.path == "filter.any[4].user.in" and "list values" in err.message


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"colour": {"is": "red"}}, "filter.colour", "unknown field"),
        ({"provider": {"like": "f%"}}, "filter.provider.like", "unknown operator"),
        (
            {"all": [{"provider": {"is": "fcm"}}, {"app_version": {"gte": "banana"}}]},
            "filter.all[1].app_version.gte",
            "not a version",
        ),
        ({"app_version": {"gte": 2}}, "filter.app_version.gte", "not a version"),
        ({"tag": "plan", "is": "pro", "in": ["x"]}, "filter", "exactly one operator"),
        ({"tag": "plan", "like": "pro"}, "filter.like", "unknown operator"),
        ({"meta": 'a"b', "is": "x"}, "filter.meta", "no quotes"),
        ({"provider": {"is": "fcm"}, "platform": {"is": "ios"}}, "filter", "one condition per object"),
        ({"all": []}, "filter.all", "non-empty list"),
        ([], "filter", "must be an object"),
        ({"last_seen": {"before": "yesterday"}}, "filter.last_seen.before", "RFC 3339"),
        ({"last_seen": {"since": "2026-01-01T00:00:00Z"}}, "filter.last_seen", "before"),
        ({"language": {"is": "pt-BR"}}, "filter.language.is", "language code"),
        ({"user": "missing"}, "filter.user", "present"),
        ({"provider": "present"}, "filter.provider", "one operator"),
        ({"tag": "plan", "exists": "yes"}, "filter.exists", "true or false"),
    ],
)
def test_errors_name_the_field_and_say_how(raw: Any, path: str, words: str) -> None:
    err = _error(raw)
    assert (err.path, words in err.message) == (path, True), err
    assert str(err).startswith(path + ": ")


def _sql(raw: dict[str, Any], dialect: str = "sqlite") -> str:
    from sqlalchemy.dialects import postgresql, sqlite

    from pushgate.store.filters import condition

    d = postgresql.dialect() if dialect == "postgresql" else sqlite.dialect()
    return str(
        condition(parse(raw), "app_1", dialect).compile(dialect=d, compile_kwargs={"literal_binds": True})
    )


def test_leaves_compile_to_their_indexed_columns() -> None:
    assert _sql({"app_version": {"gte": "2.10.0"}}) == f"devices.app_version_key >= '{_key('2.10.0')}'"
    assert (
        "device_tags.app_id = 'app_1' AND device_tags.\"key\" = 'plan' AND device_tags.value = 'pro'"
        in _sql({"tag": "plan", "is": "pro"})
    )
    assert "(devices.id NOT IN (SELECT device_tags.device_id" in _sql({"tag": "plan", "not": "free"})
    assert _sql({"meta": "name", "is": "Ann"}) == "json_extract(devices.meta, '$.\"name\"') = 'Ann'"
    assert (
        _sql({"meta": "name", "is": "Ann"}, "postgresql") == "(CAST(devices.meta AS JSON) ->> 'name') = 'Ann'"
    )


def test_narrow_filters_are_the_ones_with_an_indexed_equality() -> None:
    from pushgate.store.filters import narrow

    assert narrow(parse({"all": [{"user": {"is": "u"}}, {"provider": {"is": "fcm"}}]}))
    assert narrow(parse({"app_version": {"is": "2.10"}}))
    assert not narrow(parse({"app_version": {"gte": "2.10"}}))
    assert not narrow(parse({"any": [{"user": {"is": "u"}}, {"provider": {"is": "fcm"}}]}))
    assert not narrow(parse({"not": {"user": {"is": "u"}}}))
