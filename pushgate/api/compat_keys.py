"""``/v1/compat/sockudo/keys``: the signing keys Sockudo clients sign their requests with.

Sockudo (like Pusher) signs each request with an HMAC of a shared secret, so the server must
be able to read the secret back: it is stored sealed with ``secret_key``
(``store/compat_keys.py``), shown once at creation and on rotation, never in a listing. Admin
scope (``domain/scopes.py``): a signing key can do everything the Sockudo push API can.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pushgate.api.errors import ApiError, error_responses, not_found
from pushgate.api.services import AppDep, Services, ServicesDep
from pushgate.domain.timefmt import rfc3339
from pushgate.store.compat_keys import CompatKeyStore, NoSuchSigningKey, SigningKey

#: The front-end these routes manage keys for.
SYSTEM = "sockudo"

NO_MASTER_KEY = (
    "no master key: set PUSHGATE_SECRET_KEY (or secret_key in the config file, 16+ characters, "
    "e.g. `openssl rand -base64 32`) and restart, so signing secrets can be stored encrypted"
)


class SigningKeyOut(msgspec.Struct, omit_defaults=True):
    #: The key id a Sockudo client sends as ``auth_key`` (its ``key`` setting).
    auth_key: str
    #: The app id to put in ``/apps/{appId}/push`` (its ``app_id`` setting).
    app_id: str
    created_at: str
    rotated_at: str | None = None


class SigningKeyCreated(msgspec.Struct):
    key: SigningKeyOut
    #: The signing secret (the client's ``secret`` setting): shown only in this answer.
    secret: str


class SigningKeyList(msgspec.Struct):
    items: list[SigningKeyOut]


def key_out(key: SigningKey) -> SigningKeyOut:
    return SigningKeyOut(
        auth_key=key.auth_key,
        app_id=key.app_id,
        created_at=rfc3339(key.created_at) or "",
        rotated_at=rfc3339(key.rotated_at),
    )


def compat_keys(services: Services) -> CompatKeyStore:
    """The store, sealing with the same master key as uploaded provider credentials."""
    return CompatKeyStore(services.db, services.creds.box)


def _writable(services: Services) -> CompatKeyStore:
    store = compat_keys(services)
    if store.box is None:
        raise ApiError(409, "conflict", NO_MASTER_KEY)
    return store


class CompatKeyController(Controller):
    path = "/compat/sockudo/keys"
    tags = ["compat"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create a Sockudo signing key for this app (its secret is in this answer only)",
        responses=error_responses(401, 403, 409),
    )
    async def create_signing_key(self, app: AppDep, services: ServicesDep) -> SigningKeyCreated:
        key, secret = await _writable(services).create(app.id, SYSTEM)
        return SigningKeyCreated(key_out(key), secret)

    @get(
        "/",
        summary="This app's Sockudo signing keys (never their secrets)",
        responses=error_responses(401, 403),
    )
    async def list_signing_keys(self, app: AppDep, services: ServicesDep) -> SigningKeyList:
        return SigningKeyList([key_out(k) for k in await compat_keys(services).list_keys(app.id, SYSTEM)])

    @post(
        "/{auth_key:str}/rotate",
        status_code=HTTP_200_OK,
        summary="Give a Sockudo signing key a new secret (the old one stops working at once)",
        responses=error_responses(401, 403, 404, 409),
    )
    async def rotate_signing_key(
        self, auth_key: FromPath[str], app: AppDep, services: ServicesDep
    ) -> SigningKeyCreated:
        try:
            key, secret = await _writable(services).rotate(app.id, SYSTEM, auth_key)
        except NoSuchSigningKey:
            raise not_found("signing key", auth_key) from None
        return SigningKeyCreated(key_out(key), secret)

    @delete(
        "/{auth_key:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a Sockudo signing key",
        responses=error_responses(401, 403, 404),
    )
    async def delete_signing_key(self, auth_key: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        if not await compat_keys(services).delete(app.id, SYSTEM, auth_key):
            raise not_found("signing key", auth_key)
