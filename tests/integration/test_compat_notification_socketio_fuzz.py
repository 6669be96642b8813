"""Fuzzing the notification-socket.io front-end's REST routes (not in /openapi.json, so the
OpenAPI fuzzing does not reach them): seeded random user ids, connection ids and push bodies,
against both databases. Whatever arrives, the answer is never a 5xx, and it is one of the
statuses docs/compat.md lists for these routes."""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import quote

import httpx
from support.gateway import Gateway

#: Requests tried per route (seeded: a failure reproduces).
TRIES = 40

_STRINGS = ["", "u1", "é" * 300, "x" * 5000, "a/b", "%00", "\x00", "null", "{}", "../..", " ", "💥"]
_VALUES: list[Any] = [None, 0, -1, 1.5, 10**30, True, "", "t", [], [1, "a"], {}, {"title": 1}, {"body": None}]


def _value(rnd: random.Random, depth: int = 0) -> Any:
    pick = rnd.random()
    if depth < 3 and pick < 0.25:
        return {
            rnd.choice(["title", "body", "params", "message", "x"]): _value(rnd, depth + 1) for _ in range(3)
        }
    if depth < 3 and pick < 0.35:
        return [_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return rnd.choice(_VALUES + _STRINGS)


#: What these routes answer (docs/compat.md, notification-socket.io): 200, the original's empty
#: 401, 400 Bad Request, 404/405 for what is not a route, 413 for a body over the limit.
ALLOWED = {200, 400, 401, 404, 405, 413}


async def test_random_requests_never_fail_the_server(gateway: Gateway) -> None:
    rnd = random.Random(14)
    seen: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=gateway.url, headers={"X-AUTH-TOKEN": gateway.key}) as c:
        for _ in range(TRIES):
            user = quote(rnd.choice([*_STRINGS, "u1", "u2"]), safe="")
            conn = rnd.choice([*_STRINGS, str(rnd.random())])
            params = {} if rnd.random() < 0.2 else {"connectionId": conn}
            r = await c.put(f"/api/{user or 'u'}/register", params=params)
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code in ALLOWED, (user, params, r.status_code, r.text)

            body: Any = {"message": _value(rnd)} if rnd.random() < 0.7 else _value(rnd)
            raw = json.dumps(body).encode() if rnd.random() < 0.9 else rnd.choice([b"{", b"\xff", b"[]", b""])
            r = await c.post(
                f"/api/{user or 'u'}/push", content=raw, headers={"Content-Type": "application/json"}
            )
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code in ALLOWED, (user, raw[:200], r.status_code, r.text)
    assert seen.get(200, 0) >= 5 and seen.get(400, 0) >= 5, seen  # both kinds were exercised
