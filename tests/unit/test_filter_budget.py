"""The request budget of audience filters and the SQL of the review's fixes (findings 3, 4, 11),
without a database (``tests/integration/test_filter_edges.py`` runs them on both)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from pushgate.domain.filters import (
    MAX_LIST,
    MAX_NODES,
    MAX_REQUEST_NODES,
    MAX_REQUEST_VALUES,
    MAX_VALUES,
    FilterError,
    RequestBudget,
    parse,
)
from pushgate.store.filters import condition, count_query, nullable, recipients_condition


def _sql(raw: dict[str, Any], dialect: str = "sqlite") -> str:
    d = postgresql.dialect() if dialect == "postgresql" else sqlite.dialect()
    return str(
        condition(parse(raw), "app_1", dialect).compile(dialect=d, compile_kwargs={"literal_binds": True})
    )


def test_one_budget_for_all_the_filters_of_a_request() -> None:
    wide = {"any": [{"user": {"in": ["u"] * MAX_LIST}}] * (MAX_VALUES // MAX_LIST)}
    budget = RequestBudget()
    for i in range(MAX_REQUEST_VALUES // MAX_VALUES):
        parse(wide, f"recipients[{i}].filter", budget)
    with pytest.raises(FilterError) as err:
        parse(wide, "recipients[9].filter", budget)
    assert err.value.path == "recipients[9].filter.any[0].user.in"
    assert f"at most {MAX_REQUEST_VALUES} list values in all the filters of one request" in err.value.message
    full = {"any": [{"user": "present"}] * (MAX_NODES - 1)}
    budget = RequestBudget()
    for i in range(MAX_REQUEST_NODES // MAX_NODES):
        parse(full, f"recipients[{i}].filter", budget)
    with pytest.raises(FilterError) as err:
        parse({"user": "present"}, "recipients[7].filter", budget)
    assert (
        err.value.path == "recipients[7].filter" and "in all the filters of one request" in err.value.message
    )
    # Without a shared budget each filter is alone (as before).
    for _ in range(3):
        parse(wide)


def test_not_is_null_safe_only_where_null_can_arise() -> None:
    assert (
        _sql({"not": {"user": {"is": "u1"}}}, "postgresql") == "NOT coalesce(devices.\"user\" = 'u1', false)"
    )
    assert _sql({"not": {"user": {"is": "u1"}}}) == "coalesce(devices.user = 'u1', 0) = 0"
    assert _sql({"not": {"user": "absent"}}, "postgresql") == (
        'NOT (devices."user" IS NULL OR devices."user" = \'\')'
    )
    assert "coalesce" not in _sql({"not": {"tag": "plan", "is": "pro"}})
    assert nullable(parse({"any": [{"tag": "t", "exists": True}, {"meta": "m", "is": "x"}]}))
    assert not nullable(parse({"all": [{"provider": {"is": "fcm"}}, {"not": {"locale": {"is": "de"}}}]}))


def test_language_reads_underscores_as_dashes_in_a_few_terms() -> None:
    sql = _sql({"language": {"in": ["pt", "de", "eng"]}})
    assert sql == (
        "replace(lower(devices.locale), '_', '-') IN ('de', 'eng', 'pt') "
        "OR substr(replace(lower(devices.locale), '_', '-'), 1, 3) IN ('de-', 'pt-') "
        "OR substr(replace(lower(devices.locale), '_', '-'), 1, 4) = 'eng-'"
    )


def test_a_request_at_the_limits_stays_far_below_the_bind_parameter_limit() -> None:
    langs = [f"{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)}" for i in range(MAX_LIST)]
    budget = RequestBudget()
    raws = [
        {"any": [{"language": {"in": langs}}] * (MAX_VALUES // MAX_LIST)},
        {"any": [{"channels": {"all": langs}}] * (MAX_VALUES // MAX_LIST)},
        {"any": [{"tag": "t", "is": f"v{i}"} for i in range(MAX_NODES - 1)]},
        {"any": [{"meta": "m", "is": f"v{i}"} for i in range(MAX_REQUEST_NODES - MAX_NODES - 10 - 1)]},
    ]
    entries: list[dict[str, Any]] = [{"type": "filter", "filter": r} for r in raws]
    nodes = [parse(r, "", budget) for r in raws]
    assert (budget.nodes, budget.values) == (MAX_REQUEST_NODES, MAX_REQUEST_VALUES)
    others = [{"type": "user", "user": f"u{i}"} for i in range(1000 - len(entries))]
    where = recipients_condition(entries + others, "app_1", "postgresql", nodes + [None] * len(others))
    params = count_query("app_1", where, 0.0).compile(dialect=postgresql.dialect()).params
    assert len(params) < 32767 // 2, len(params)
