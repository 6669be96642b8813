"""Bearer-key authentication and authorisation for every ``/v1`` route.

A bearer credential shaped like a JWT is a client or device token instead (docs/clients.md,
``api/client_auth.py``): it goes through the same wrong-credential throttle and request rate,
and the token's own route rules (``domain/client_scopes.py``) replace the key's scopes.

Runs as the router's ``before_request`` hook, i.e. before the body is read, so a request with
a wrong key is a 401 whatever its body. In order: an address that sent too many wrong keys is
refused (429) before its key is looked at; the key is resolved (cached briefly, so a database
lookup is off most requests); the key's request rate is checked (429); the key must hold the
scope the route needs (403, ``domain/scopes.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from litestar import Request

from pushgate.api.client_auth import AppCache, ClientPrincipal, TokenRefused, check_device, verify_signature
from pushgate.api.errors import ApiError
from pushgate.api.throttle import FailureThrottle, KeyRateLimiter, client_key, retry_after_header
from pushgate.config import AuthSettings
from pushgate.domain.client_scopes import TokenKind, client_refusal, device_refusal, looks_like_jwt
from pushgate.domain.scopes import Scope, allows, format_scopes, required_scope
from pushgate.store.apps import LAST_USED_EVERY, AppStore, Principal, hash_key

log = logging.getLogger("pushgate.api")

#: How long a resolved key is trusted without asking the database. Revoking a key drops it from
#: this process's cache at once; other processes stop accepting it within this time.
CACHE_TTL = 30.0


class KeyCache:
    def __init__(self) -> None:
        self._items: dict[str, tuple[Principal, float]] = {}

    def get(self, key_hash: str) -> Principal | None:
        hit = self._items.get(key_hash)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, key_hash: str, principal: Principal) -> None:
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[key_hash] = (principal, time.monotonic() + CACHE_TTL)

    def drop(self, key_id: str) -> None:
        """Forget a key (it was revoked): its next request asks the database again."""
        for key_hash in [h for h, (p, _) in self._items.items() if p.key.id == key_id]:
            del self._items[key_hash]


class Gatekeeper:
    """This process's authentication state: the key cache and both throttles."""

    def __init__(self, settings: AuthSettings) -> None:
        self.cache = KeyCache()
        #: Apps found by client and device tokens' ``iss`` (``api/client_auth.py``).
        self.apps = AppCache()
        self.failures = FailureThrottle(settings)
        self.rates = KeyRateLimiter(settings.key_requests_per_second)
        #: key hash → its lookup under way (concurrent requests with one new key share it).
        self.lookups: dict[str, asyncio.Future[Principal | None]] = {}
        #: key id → when this process last wrote its ``last_used_at``.
        self._touched: dict[str, float] = {}

    def due_touch(self, principal: Principal) -> bool:
        """Whether to write the key's ``last_used_at`` now (at most once a minute per process)."""
        now = time.time()
        last = max(self._touched.get(principal.key.id, 0.0), principal.key.last_used_at or 0.0)
        if now - last < LAST_USED_EVERY:
            return False
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[principal.key.id] = now
        return True


_UNAUTHORIZED = "missing or invalid API key: send 'Authorization: Bearer <app key>'"


def _unauthorized(message: str = _UNAUTHORIZED) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _blocked(seconds: float) -> ApiError:
    return ApiError(
        429,
        "too_many_failures",
        f"too many requests with a wrong API key from this address; try again in {seconds:.0f} s "
        "with a valid key",
        headers=retry_after_header(seconds),
    )


def _credential(request: Request[Any, Any, Any]) -> str:
    """The ``Authorization: Bearer`` value: an API key, a client token or a device token."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _unauthorized()
    return credential


def _lookup_refused(gate: Gatekeeper, address: str) -> ApiError:
    blocked = gate.failures.retry_after(address)
    if blocked > 0:
        return _blocked(blocked)
    return ApiError(
        429,
        "too_many_failures",
        "too many unrecognised API keys from this address at once; retry in a second",
        headers=retry_after_header(1),
    )


async def _resolve(request: Request[Any, Any, Any], gate: Gatekeeper, address: str, key: str) -> Principal:
    kh = hash_key(key)
    principal = gate.cache.get(kh)
    if principal is not None:
        return principal
    shared = gate.lookups.get(kh)
    principal = None
    if shared is not None:  # the same key is being looked up for another request: share it
        try:
            principal = await asyncio.shield(shared)
        except asyncio.CancelledError:
            if not shared.cancelled():
                raise  # this request itself was cancelled
            shared = None
    if shared is None:
        principal = await _lookup(request, gate, address, key, kh)
    if principal is None:
        raise _unauthorized()
    return principal


async def _lookup(
    request: Request[Any, Any, Any], gate: Gatekeeper, address: str, key: str, kh: str
) -> Principal | None:
    """One database lookup of a key not in the cache, counted against the client's address."""
    if not gate.failures.reserve(address):
        raise _lookup_refused(gate, address)
    store: AppStore = request.app.state.services.apps
    future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
    gate.lookups[kh] = future
    wrong = False
    try:
        principal = await store.authenticate(key)
        wrong = principal is None
    except Exception as exc:  # e.g. the database is down: not a wrong key
        future.set_exception(exc)
        future.exception()  # retrieved here: the requests sharing it re-raise it themselves
        raise
    except BaseException:  # cancelled: whoever shares the lookup does its own
        future.cancel()
        raise
    finally:
        del gate.lookups[kh]
        gate.failures.release(address, failed=wrong)
    future.set_result(principal)
    if principal is not None:
        gate.cache.put(kh, principal)
        if gate.due_touch(principal):
            try:
                await store.touch(principal.key.id)
            except Exception as exc:  # a read-only database must not refuse a valid key
                log.warning("could not record the use of key %s: %s", principal.key.id, exc)
    return principal


async def authenticate(request: Request[Any, Any, Any]) -> None:
    gate: Gatekeeper = request.app.state.services.gate
    # The ASGI scope's (host, port) as is: Litestar's ``request.client`` builds an object per call.
    peer = request.scope.get("client")
    address = client_key(peer[0] if peer else None)
    blocked = gate.failures.retry_after(address)
    if blocked > 0:
        raise _blocked(blocked)
    credential = _credential(request)
    if looks_like_jwt(credential):
        await _authenticate_token(request, gate, address, credential)
        return
    await authenticate_key(request, credential, required_scope(request.method, request.scope["path"]))


async def authenticate_key(request: Request[Any, Any, Any], key: str, needed: Scope) -> Principal:
    """An app key taken from wherever the caller's API carries it (``Authorization: Bearer``
    natively; a compat front-end's own header): the wrong-key throttle, the key's rate and its
    scope apply the same everywhere, so one key works, and is guarded, on every front-end."""
    gate: Gatekeeper = request.app.state.services.gate
    peer = request.scope.get("client")
    address = client_key(peer[0] if peer else None)
    blocked = gate.failures.retry_after(address)
    if blocked > 0:
        raise _blocked(blocked)
    if not key:
        raise _unauthorized()
    principal = await _resolve(request, gate, address, key)
    _take_rate(gate, principal.key.id, "API key")
    if not allows(principal.key.scopes, needed):
        raise ApiError(
            403,
            "forbidden",
            f"this API key ({principal.key.name!r}, scopes: {format_scopes(principal.key.scopes)}) "
            f"may not do this: it needs the {needed!s} scope; use a key that has it "
            "(POST /v1/keys or `pushgate apps keys create`)",
        )
    request.state.app = principal.app
    request.state.key = principal.key
    request.state.client = None
    return principal


def _take_rate(gate: Gatekeeper, bucket: str, what: str) -> None:
    wait = gate.rates.take(bucket)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"this {what} is limited to {gate.rates.rate:g} requests per second "
            "([auth] key_requests_per_second); retry after Retry-After seconds",
            headers=retry_after_header(wait),
        )


async def _authenticate_token(
    request: Request[Any, Any, Any], gate: Gatekeeper, address: str, token: str
) -> None:
    """A client or device token (``api/client_auth.py``): its signature is checked inside the
    wrong-credential throttle (a forged token counts like a wrong key; an expired one does not:
    it was genuine), then its rate is taken, its route checked (``domain/client_scopes.py``) and
    its device read. The app key's scopes do not apply: the token's own rules do."""
    services = request.app.state.services
    if not gate.failures.reserve(address):
        raise _lookup_refused(gate, address)
    guess = False
    try:
        principal: ClientPrincipal = await verify_signature(services, gate.apps, token)
    except TokenRefused as exc:
        guess = exc.guess
        raise _token_refused(exc) from None
    finally:
        gate.failures.release(address, failed=guess)
    _take_rate(gate, principal.rate_key(token), f"{principal.kind} token")
    method, path = request.method, request.scope["path"]
    if principal.kind is TokenKind.CLIENT:
        refusal = client_refusal(method, path)
    else:
        refusal = device_refusal(method, path, principal.subject or "")
    if refusal is not None:
        raise ApiError(403, "forbidden", refusal)
    try:  # last: a refused or over-rate request costs no database read
        principal = await check_device(services, principal)
    except TokenRefused as exc:
        raise _token_refused(exc) from None
    request.state.app = principal.app
    request.state.client = principal


def _token_refused(exc: TokenRefused) -> ApiError:
    return _unauthorized(
        f"invalid client or device token: {exc.message} "
        "(send 'Authorization: Bearer <token>' as POST /v1/client-tokens or POST /v1/devices returned it)"
    )
