"""Bearer-key authentication for every ``/v1`` route.

Runs as the router's ``before_request`` hook, i.e. before the body is read, so a request with
a wrong key is a 401 whatever its body. Resolved keys are cached briefly to keep a database
lookup off every request.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request

from pushgate.api.errors import ApiError
from pushgate.store.apps import App, AppStore, hash_key

_TTL = 30.0


class KeyCache:
    def __init__(self) -> None:
        self._items: dict[str, tuple[App, float]] = {}

    def get(self, key_hash: str) -> App | None:
        hit = self._items.get(key_hash)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, key_hash: str, app: App) -> None:
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[key_hash] = (app, time.monotonic() + _TTL)


_UNAUTHORIZED = "missing or invalid API key: send 'Authorization: Bearer <app key>'"


async def authenticate(request: Request[Any, Any, Any]) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "unauthorized", _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    services = request.app.state.services
    cache: KeyCache = services.key_cache
    kh = hash_key(key)
    app = cache.get(kh)
    if app is None:
        store: AppStore = services.apps
        app = await store.authenticate(key)
        if app is None:
            raise ApiError(401, "unauthorized", _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        cache.put(kh, app)
    request.state.app = app
