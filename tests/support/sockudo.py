"""Signing Sockudo push requests in tests, computed here from the algorithm itself (hmac,
hashlib), not with pushgate's ``domain/pusher_signing.py``: a bug there cannot hide itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx


@dataclass
class SockudoKey:
    app_id: str
    key: str
    secret: str


def hmac_signature(secret: str, method: str, path: str, params: dict[str, str]) -> str:
    canonical = "&".join(f"{k.lower()}={params[k]}" for k in sorted(params, key=lambda k: k.lower().encode()))
    message = f"{method.upper()}\n{path}\n{canonical}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_query(
    key: SockudoKey,
    method: str,
    path: str,
    body: bytes | None = None,
    params: dict[str, str] | None = None,
    *,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The full query of a signed request (``auth_*`` and ``body_md5`` included)."""
    q = dict(params or {})
    q.update(
        auth_key=key.key,
        auth_timestamp=str(int(time.time()) if timestamp is None else timestamp),
        auth_version="1.0",
    )
    if body:
        q["body_md5"] = hashlib.md5(body).hexdigest()
    q["auth_signature"] = hmac_signature(key.secret, method, path, q)
    return q


async def call(
    client: httpx.AsyncClient,
    key: SockudoKey,
    method: str,
    suffix: str,
    json_body: Any = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One signed request to ``/apps/{app_id}/push{suffix}`` (no ``Authorization`` header: the
    signature is the only credential)."""
    path = f"/apps/{key.app_id}/push{suffix}"
    body = None if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
    query = signed_query(key, method, path, body, params)
    return await client.request(
        method,
        f"{path}?{urlencode(query)}",
        content=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


async def new_key(client: httpx.AsyncClient) -> SockudoKey:
    """A new Sockudo signing key of the client's app (``POST /v1/compat/sockudo/keys``)."""
    r = await client.post("/v1/compat/sockudo/keys")
    assert r.status_code == 201, r.text
    body = r.json()
    return SockudoKey(body["key"]["app_id"], body["key"]["auth_key"], body["secret"])
