"""``POST /v1/publish/batch``: what refuses the whole request (its envelope), as opposed to one item."""

from __future__ import annotations

from typing import Any

import pytest
from support.api import paged
from support.gateway import Gateway

ITEM = {"recipients": [{"type": "user", "user": "nobody"}], "notification": {"title": "x"}}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"publishes": []}, "publishes: Expected `array` of length >= 1"),
        ({"publishes": [ITEM] * 1001}, "publishes: Expected `array` of length <= 1000"),
        ({"publishes": [ITEM, 5]}, "publishes[1]: Expected `object`, got `int`"),
        ({"publishes": [ITEM], "extra": 1}, "Object contains unknown field `extra`"),
        ({}, "Object missing required field `publishes`"),
        ([ITEM], "Expected `object`, got `array`"),
    ],
)
async def test_a_bad_envelope_is_a_400_and_stores_nothing(gateway: Gateway, body: Any, hint: str) -> None:
    r = await gateway.client.post("/v1/publish/batch", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and hint in error["message"], error
    assert await paged(gateway.client, "/v1/publishes") == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_batch_of_only_invalid_items_is_answered_item_by_item(gateway: Gateway) -> None:
    r = await gateway.client.post("/v1/publish/batch", json={"publishes": [{}, {"recipients": []}]})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["admitted"] == 0 and body["rejected"] == 2
    assert [i["error"]["message"] for i in body["items"]] == [
        "body: Object missing required field `recipients`",
        "recipients: Expected `array` of length >= 1",
    ]
    assert await paged(gateway.client, "/v1/publishes") == []
