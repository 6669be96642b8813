"""Guessing keys and hammering with one key, against the real API: wrong keys from one address
are answered 429 after ``[auth] max_failures`` (914 guesses a second were all answered 401), and
a key over ``key_requests_per_second`` gets 429 with ``Retry-After`` while other keys go on."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import httpx
from support.api import gather_limited
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab


async def _guess(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get(
        "/v1/devices", headers={"Authorization": f"Bearer pgk_{secrets.token_urlsafe(32)}"}
    )


async def test_wrong_key_guesses_from_one_address_are_cut_off(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as anon:
        answers = await gather_limited([_guess(anon) for _ in range(200)], limit=20)
    statuses = Counter(r.status_code for r in answers)
    assert statuses[401] == 20 and statuses[429] == 180, statuses  # [auth] max_failures = 20
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 429} == {"too_many_failures"}
    # Guesses still being checked count too (those refused meanwhile are told to retry in 1 s);
    # once 20 are known wrong, the address is blocked for [auth] block_seconds.
    assert 290 <= int(answers[-1].headers["retry-after"]) <= 300
    # The right key from the blocked address is refused too: a different answer would tell a
    # guesser that it had found a key.
    assert (await gateway.client.get("/v1/devices")).status_code == 429
    # A request without any key is not a guess and is not counted, but is blocked all the same.
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        assert (await anon.get("/v1/devices")).status_code == 429
        assert (await anon.get("/healthz")).status_code == 200  # only /v1 is behind the key


async def test_forwarded_addresses_count_only_from_trusted_proxies(database_url: str, lab: Lab) -> None:
    """Behind a trusted proxy each client has its own count; without one, ``X-Forwarded-For``
    is ignored (a guesser cannot pick a fresh address per request)."""
    env = {"PUSHGATE_AUTH_MAX_FAILURES": "3"}
    async with running_gateway(gateway_settings(database_url, lab, **env)) as gw:
        for i in range(6):
            spoofed = {"X-Forwarded-For": f"198.51.100.{i}"}
            r = await gw.client.get("/v1/devices", headers={**spoofed, "Authorization": "Bearer wrong-key"})
            assert r.status_code == (401 if i < 3 else 429), (i, r.text)
    env["PUSHGATE_SERVER_TRUSTED_PROXIES"] = '["127.0.0.1"]'
    async with running_gateway(gateway_settings(database_url, lab, **env)) as gw:
        attacker = {"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer wrong-key"}
        assert [(await gw.client.get("/v1/devices", headers=attacker)).status_code for _ in range(4)] == [
            401,
            401,
            401,
            429,
        ]
        other = await gw.client.get("/v1/devices", headers={"X-Forwarded-For": "203.0.113.10"})
        assert other.status_code == 200, other.text


async def test_a_key_over_its_rate_gets_429_and_other_keys_go_on(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_AUTH_KEY_REQUESTS_PER_SECOND="5")
    async with running_gateway(settings) as gw:
        r = await gw.client.post("/v1/keys", json={"name": "second", "scopes": ["read"]})
        other = r.json()["secret"]
        answers = await asyncio.gather(*(gw.client.get("/v1/devices") for _ in range(30)))
        statuses = Counter(a.status_code for a in answers)
        # One request went on creating the key; a second's worth (5) are allowed, plus what the
        # bucket refills while the burst is answered.
        assert 4 <= statuses[200] <= 8 and statuses[429] >= 22, statuses
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert limited.headers["retry-after"] == "1"
        assert "key_requests_per_second" in limited.json()["error"]["message"]
        async with gw.as_app(other) as client:
            assert (await client.get("/v1/devices")).status_code == 200
        await asyncio.sleep(1.0)
        assert (await gw.client.get("/v1/devices")).status_code == 200
