"""An app's API keys through the API: create (the secret is shown once), list, revoke.

Every route needs an ``admin`` key (``domain/scopes.py``) and reaches only the calling app's
keys: another app's key id is "not found", never a different answer. Listings carry metadata
only; the database holds no secret to show (keys are stored hashed).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from pushgate.api.errors import ApiError, error_responses, not_found
from pushgate.api.services import AppDep, KeyDep, ServicesDep
from pushgate.domain.scopes import Scope
from pushgate.domain.timefmt import rfc3339
from pushgate.store.apps import ApiKey, LastAdminKey, NoSuchKey

#: A key's name: what it is for ("billing backend"); no control characters.
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$(?!\n)")]


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: KeyName
    #: ``admin`` (everything, including keys and credentials), ``publish``, ``register``, ``read``.
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=4)]


class KeyOut(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    scopes: list[str]
    #: The secret's first 8 characters, to tell keys apart.
    prefix: str
    created_at: str
    last_used_at: str | None = None
    revoked_at: str | None = None
    #: True for the key this request was made with.
    current: bool = False


class KeyCreated(msgspec.Struct):
    key: KeyOut
    #: The API key itself: shown only in this answer, never again.
    secret: str


class KeyEnvelope(msgspec.Struct):
    key: KeyOut


class KeyList(msgspec.Struct):
    items: list[KeyOut]


def key_out(key: ApiKey, current_id: str | None = None) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        scopes=sorted(str(s) for s in key.scopes),
        prefix=key.prefix,
        created_at=rfc3339(key.created_at) or "",
        last_used_at=rfc3339(key.last_used_at),
        revoked_at=rfc3339(key.revoked_at),
        current=key.id == current_id,
    )


class KeyController(Controller):
    path = "/keys"
    tags = ["keys"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create an API key for this app (its secret is in this answer only)",
        responses=error_responses(400, 401, 403),
    )
    async def create_key(self, data: JSONBody[KeyIn], app: AppDep, services: ServicesDep) -> KeyCreated:
        created, secret = await services.apps.add_key(app.id, name=data.name, scopes=frozenset(data.scopes))
        return KeyCreated(key=key_out(created), secret=secret)

    @get("/", summary="This app's API keys (never their secrets)", responses=error_responses(400, 401, 403))
    async def list_keys(self, app: AppDep, key: KeyDep, services: ServicesDep) -> KeyList:
        return KeyList([key_out(k, key.id) for k in await services.apps.list_keys(app.id)])

    @delete(
        "/{key_id:str}",
        status_code=HTTP_200_OK,
        summary="Revoke an API key of this app (at once in this process; elsewhere within 30 s)",
        responses=error_responses(400, 401, 403, 404, 409),
    )
    async def revoke_key(
        self, key_id: FromPath[str], app: AppDep, key: KeyDep, services: ServicesDep
    ) -> KeyEnvelope:
        try:
            revoked = await services.apps.revoke_key(app.id, key_id)
        except NoSuchKey:
            raise not_found("key", key_id) from None
        except LastAdminKey as exc:
            raise ApiError(409, "last_admin_key", str(exc)) from None
        services.gate.cache.drop(revoked.id)
        return KeyEnvelope(key_out(revoked, key.id))
