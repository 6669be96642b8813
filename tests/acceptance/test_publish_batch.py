"""``POST /v1/publish/batch`` end to end, on both databases: partial admission, idempotency keys
inside and across batches, and exactly one notification per admitted publish at the lab."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from support.api import all_final, fcm_token, gather_limited, paged
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab
from support.wait import wait_for

#: Invalid items and what makes each invalid; the single route answers the same error for each.
INVALID: dict[int, dict[str, Any]] = {
    0: {"recipients": [], "notification": {"title": "x"}},
    7: {"recipients": [{"type": "user", "user": "u7"}], "notification": {"title": "x"}, "colour": "red"},
    99: {"recipients": [{"type": "user", "user": "u99"}], "notification": {}},
    250: {"recipients": [{"type": "user", "user": 250}], "notification": {"title": "x"}},
    251: {"recipients": [{"type": "user", "user": "u251"}], "expire_at": "yesterday"},
    500: {"recipients": [{"type": "user", "user": "u500"}], "expire_at": "2001-01-01T00:00:00Z"},
    640: {
        "recipients": [{"type": "channel", "channel": "u640"}],
        "notification": {"title": "t" * 200, "body": "x" * 4000},
    },
    777: {"recipients": [{"type": "token", "provider": "bogus", "token": "t" * 20}]},
    998: {"recipients": [{"type": "pigeon", "user": "u998"}], "notification": {"title": "x"}},
    999: {"notification": {"title": "x"}},
}


async def register_users(gw: Gateway, n: int) -> list[str]:
    """``n`` FCM devices, device ``i`` of user ``u<i>`` (and in channel ``u<i>``); their tokens."""
    tokens = [fcm_token() for _ in range(n)]

    async def batch(start: int) -> None:
        items = [
            {
                "provider": "fcm",
                "platform": "android",
                "token": tokens[i],
                "user": f"u{i}",
                "channels": [f"u{i}"],
            }
            for i in range(start, min(start + 1000, n))
        ]
        r = await gw.client.post("/v1/devices/batch", json={"devices": items})
        assert r.status_code == 200, r.text

    await gather_limited([batch(s) for s in range(0, n, 1000)], limit=2)
    return tokens


def to_user(i: int, **extra: Any) -> dict[str, Any]:
    return {"recipients": [{"type": "user", "user": f"u{i}"}], "notification": {"title": f"hi {i}"}, **extra}


async def batch(gw: Gateway, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = await gw.client.post("/v1/publish/batch", json={"publishes": items})
    assert r.status_code == 202, r.text
    body = r.json()
    assert len(body["items"]) == len(items)
    return list(body["items"])


async def test_invalid_items_are_answered_in_place_and_the_rest_admitted_and_delivered_once(
    gateway: Gateway, lab: Lab
) -> None:
    tokens = await register_users(gateway, 1000)
    items = [INVALID.get(i, to_user(i)) for i in range(1000)]
    got = await batch(gateway, items)

    errors = {i: item["error"] for i, item in enumerate(got) if "error" in item}
    assert sorted(errors) == sorted(INVALID)
    for i, body in INVALID.items():  # the error object the single route answers for that body
        single = await gateway.client.post("/v1/publish", json=body)
        assert single.status_code in (400, 413), single.text
        assert errors[i] == single.json()["error"], (i, errors[i], single.json())
    assert errors[640]["code"] == "payload_too_large"
    admitted = [item["publish_id"] for i, item in enumerate(got) if i not in INVALID]
    # One-user items are planned in the batch's transaction, as single publishes are.
    assert all(
        item["status"] == "dispatching" and "replayed" not in item for item in got if "error" not in item
    )
    assert len(set(admitted)) == 990

    pubs = await all_final(gateway.client)
    assert {p["id"] for p in pubs} == set(admitted), "an invalid item was stored, or a valid one was not"
    assert {p["status"] for p in pubs} == {"completed"}
    assert all(p["counts"]["sent"] == 1 for p in pubs)
    ledger = await wait_for(lambda: (led := lab.ledger("fcm"))["total"] >= 990 and led, 30, "990 at the lab")
    sent = Counter(i["token"] for i in ledger["items"])
    assert sent == Counter(t for i, t in enumerate(tokens) if i not in INVALID)


async def test_idempotency_keys_inside_one_batch_and_across_batches(gateway: Gateway, lab: Lab) -> None:
    tokens = await register_users(gateway, 4)
    single = await gateway.client.post("/v1/publish", json=to_user(3, idempotency_key="k-single"))
    assert single.status_code == 202

    first = await batch(
        gateway,
        [
            to_user(0, idempotency_key="k1"),
            to_user(1, idempotency_key="k2"),
            to_user(2, idempotency_key="k1"),  # repeated in the batch: the first k1 publish
            to_user(2),
            to_user(3, idempotency_key="k-single"),  # a single publish's key
        ],
    )
    assert first[2] == {**first[0], "replayed": True}
    assert "replayed" not in first[0] and "replayed" not in first[1] and "replayed" not in first[3]
    assert first[4]["publish_id"] == single.json()["publish_id"] and first[4]["replayed"] is True
    assert len({first[k]["publish_id"] for k in (0, 1, 3, 4)}) == 4

    second = await batch(gateway, [to_user(1, idempotency_key="k2"), to_user(0, idempotency_key="k3")])
    assert second[0]["publish_id"] == first[1]["publish_id"] and second[0]["replayed"] is True
    assert "replayed" not in second[1]
    again = await gateway.client.post("/v1/publish", json=to_user(0, idempotency_key="k3"))
    assert again.json()["publish_id"] == second[1]["publish_id"]
    assert again.headers["Idempotent-Replayed"] == "true"

    new_ids = [
        first[0]["publish_id"],
        first[1]["publish_id"],
        first[3]["publish_id"],
        second[1]["publish_id"],
    ]
    stored = {p["id"] for p in await paged(gateway.client, "/v1/publishes")}
    assert stored == {*new_ids, single.json()["publish_id"]}
    await all_final(gateway.client)
    sent = Counter(i["token"] for i in lab.ledger("fcm")["items"])
    # u0: k1 and k3; u1: k2; u2: the keyless item; u3: the single publish only.
    assert sent == Counter({tokens[0]: 2, tokens[1]: 1, tokens[2]: 1, tokens[3]: 1})


async def test_concurrent_batches_racing_for_keys_store_each_key_once(gateway: Gateway, lab: Lab) -> None:
    """Eight batches at once, each with the same 20 keys: one publish per key, every batch told its id."""
    tokens = await register_users(gateway, 20)
    items = [to_user(i, idempotency_key=f"race-{i}") for i in range(20)]
    answers = await asyncio.gather(*(batch(gateway, items[k:] + items[:k]) for k in range(0, 16, 2)))
    ids: dict[str, set[str]] = {}
    for k, got in zip(range(0, 16, 2), answers, strict=True):
        for item, entry in zip(items[k:] + items[:k], got, strict=True):
            ids.setdefault(item["idempotency_key"], set()).add(entry["publish_id"])
    assert all(len(v) == 1 for v in ids.values()), ids
    stored = {p["id"] for p in await all_final(gateway.client)}
    assert stored == {next(iter(v)) for v in ids.values()}
    assert Counter(i["token"] for i in lab.ledger("fcm")["items"]) == Counter(tokens)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_backpressure_refuses_the_whole_batch(database_url: str, lab: Lab) -> None:
    lab.reset()
    settings = gateway_settings(database_url, lab, PUSHGATE_LIMITS_MAX_QUEUE_DEPTH="1")
    async with running_gateway(settings) as gw:
        await register_users(gw, 3)
        lab.fault(provider="fcm", latency_ms=2000)  # the first publishes stay queued

        async def refused() -> httpx.Response | None:
            r = await gw.client.post("/v1/publish/batch", json={"publishes": [to_user(i) for i in range(3)]})
            return r if r.status_code == 429 else None

        limited = await wait_for(refused, 20, "a 429 from the batch route", interval=0.2)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        stored = await paged(gw.client, "/v1/publishes")
        assert stored and len(stored) % 3 == 0, "a refused batch stored some of its items"
        lab.reset()
