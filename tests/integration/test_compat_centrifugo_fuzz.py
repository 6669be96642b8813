"""Fuzzing of the Centrifugo front-end (its routes are not in /openapi.json, so the OpenAPI
fuzzing does not reach them): each method's valid params, mutated at random (a field dropped,
retyped, made huge, nested, an unknown field added, NUL and odd Unicode in strings), must get
Centrifugo's envelope, never a server error: HTTP 200 with ``{"result": {...}}`` or
``{"error": {"code", "message"}}`` whose code is not 100 (internal).

Seeded (``PUSHGATE_FUZZ_SEED``, default 14) so a failure replays; ``PUSHGATE_FUZZ_EXAMPLES``
(default 12) mutations per method.
"""

from __future__ import annotations

import copy
import os
import random
from typing import Any

import httpx
from support.api import fcm_token
from support.gateway import Gateway

EXAMPLES = int(os.environ.get("PUSHGATE_FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("PUSHGATE_FUZZ_SEED", "14"))

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    -(2**70),
    1.5e308,
    "",
    "x" * 10_000,
    "\u0000",
    "a\u0000b",
    "\ud7ff\U0001f600",
    "../../etc",
    [],
    [None],
    ["x"] * 2000,
    {},
    {"": ""},
    {"a": {"b": {"c": [1, {"d": None}]}}},
]


def valid_params(dev: str, token: str) -> dict[str, dict[str, Any]]:
    fcm = {"fcm": {"message": {"notification": {"title": "t"}}}}
    return {
        "device_register": {
            "provider": "fcm",
            "token": token,
            "platform": "android",
            "user": "u",
            "meta": {"a": "b"},
            "topics": ["t"],
            "timezone": "UTC",
            "locale": "en",
        },
        "device_update": {
            "ids": [dev],
            "user_update": {"user": "u"},
            "topics_update": {"op": "add", "topics": ["t"]},
            "meta_update": {"meta": {"k": "v"}},
        },
        "device_remove": {"ids": ["dev_none"], "users": ["nobody"]},
        "device_list": {
            "filter": {
                "ids": [dev],
                "users": ["u"],
                "topics": ["t"],
                "providers": ["fcm"],
                "platforms": ["android"],
            },
            "limit": 10,
            "include_total_count": True,
            "include_meta": True,
            "include_topics": True,
        },
        "device_topic_update": {"device_id": dev, "op": "add", "topics": ["t"], "user": "u"},
        "device_topic_list": {
            "filter": {"device_ids": [dev], "topic_prefix": "t"},
            "limit": 5,
            "include_device": True,
        },
        "user_topic_update": {"user": "u", "op": "add", "topics": ["t"]},
        "user_topic_list": {"filter": {"users": ["u"], "topic_prefix": "t"}, "limit": 5},
        "send_push_notification": {
            "recipient": {"filter": {"topics": ["t"]}},
            "notification": {**fcm, "expire_at": 4_000_000_000},
            "send_at": 4_000_000_000,
            "analytics_uid": "campaign-1",
            "limit_strategy": {
                "rate_limit": {"key": "device.id", "policies": [{"rate": 1, "interval_ms": 60_000}]},
                "time_limit": {"send_after_time": "09:00:00", "send_before_time": "18:00:00"},
            },
        },
        "update_push_status": {"analytics_uid": "x", "status": "delivered", "device_id": dev},
        "cancel_push": {"uid": "no-such-push"},
    }


def mutate(rng: random.Random, params: Any) -> Any:
    """One random change somewhere in ``params`` (a copy)."""
    out = copy.deepcopy(params)
    if not isinstance(out, dict) or not out or rng.random() < 0.1:
        return rng.choice(ODD_VALUES)
    target = out
    # Walk into a nested object now and then.
    while rng.random() < 0.4:
        inner = [k for k, v in target.items() if isinstance(v, dict) and v]
        if not inner:
            break
        target = target[rng.choice(inner)]
    key = rng.choice(sorted(target))
    choice = rng.random()
    if choice < 0.2:
        del target[key]
    elif choice < 0.3:
        target["unknown_" + key] = 1
    else:
        target[key] = rng.choice(ODD_VALUES)
    return out


def check(method: str, params: Any, r: httpx.Response) -> None:
    what = (method, params if len(repr(params)) < 500 else repr(params)[:500], r.status_code, r.text[:500])
    assert r.status_code == 200, what
    body = r.json()
    assert isinstance(body, dict) and len(body) == 1, what
    if "result" in body:
        assert isinstance(body["result"], dict), what
    else:
        err = body["error"]
        assert set(err) == {"code", "message"} and isinstance(err["code"], int), what
        assert err["code"] != 100 and err["message"], what


async def test_mutated_params_get_the_centrifugo_envelope_never_a_server_error(gateway: Gateway) -> None:
    rng = random.Random(SEED)
    async with httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": gateway.key}, timeout=60) as c:
        token = fcm_token()
        r = await c.post(
            "/api/device_register", json={"provider": "fcm", "token": token, "platform": "android"}
        )
        dev = r.json()["result"]["id"]
        examples = valid_params(dev, token)
        for method, params in examples.items():
            r = await c.post(f"/api/{method}", json=params)
            check(method, params, r)
            for _ in range(EXAMPLES):
                bad = mutate(rng, params)
                check(method, bad, await c.post(f"/api/{method}", json=bad))
                # The same through POST /api {"method", "params"}.
                check(method, bad, await c.post("/api", json={"method": method, "params": bad}))


async def test_odd_envelopes_of_post_api(gateway: Gateway) -> None:
    """``POST /api`` with a method or a whole body of any JSON type: Centrifugo's 107 or 104,
    never a server error."""
    async with httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": gateway.key}, timeout=60) as c:
        for value in ODD_VALUES:
            for body in ({"method": value, "params": {}}, value, {"method": "device_list", "params": value}):
                r = await c.post("/api", json=body)
                check("/api", body, r)
                if "error" in r.json():
                    assert r.json()["error"]["code"] in (104, 107), r.text
