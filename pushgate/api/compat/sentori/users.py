"""Sentori's preference center and audience count, on the native policy store and filter count.

Sentori's categories are free words an app invents when it first opts a user out; pushgate's
are declared (``/v1/categories``). So a preference set here for a category pushgate does not
know creates it (opted in by default, as a Sentori category is for a user who never chose), and
the native planner then suppresses that user's deliveries of a send with that
``preferenceCategory`` (``PreferenceOptedOut``) exactly as it does a native publish's.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from pushgate.api.compat.sentori.common import app_of, body_as, services_of
from pushgate.api.compat.sentori.mapping import TargetError, audience_filter, trait_filter
from pushgate.api.errors import ApiError
from pushgate.api.publish_batch import stored_recipients
from pushgate.api.schemas import PublishIn
from pushgate.domain.filters import parse
from pushgate.domain.scopes import Scope
from pushgate.engine.housekeeping import seen_after
from pushgate.store.filters import CountTimeout, FilterStore, recipients_condition
from pushgate.store.policies import CategoryExists

_CATEGORY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: The longest user id (the native ``user`` column).
MAX_USER = 200


class PreferenceBody(msgspec.Struct, rename="camel"):
    opted_out: bool


class CountBody(msgspec.Struct, rename="camel"):
    app_user_id: str | None = None
    traits: dict[str, Any] | None = None
    audience: dict[str, Any] | None = None


def _user(user: str) -> str:
    if not user or len(user) > MAX_USER:
        raise ApiError(400, "invalid_fp_hex", f"user: must be 1-{MAX_USER} characters")
    return user


@get("/users/{user:str}/preferences", opt={"scope": Scope.READ})
async def get_preferences(request: Request[Any, Any, Any], user: FromPath[str]) -> Response[Any]:
    chosen = await services_of(request).policies.get_preferences(app_of(request).id, _user(user))
    items = [{"category": c, "optedOut": not opted_in} for c, opted_in in sorted(chosen.items())]
    return Response({"preferences": items}, status_code=HTTP_200_OK)


@put(
    "/users/{user:str}/preferences/{category:str}",
    status_code=HTTP_202_ACCEPTED,
    opt={"scope": Scope.REGISTER},
)
async def put_preference(
    request: Request[Any, Any, Any], user: FromPath[str], category: FromPath[str]
) -> Response[Any]:
    body = await body_as(request, PreferenceBody)
    _user(user)
    if not _CATEGORY.match(category):
        raise ApiError(400, "invalid_category", "category: 1-64 of letters, digits and _ . : -")
    services, app = services_of(request), app_of(request)
    if category not in await services.policies.categories_of(app.id):
        try:
            await services.policies.create_category(
                app.id, category, "created by the Sentori front-end", True
            )
        except CategoryExists:
            pass  # created meanwhile
    await services.policies.set_preference(app.id, user, category, not body.opted_out)
    answer = {"status": "updated", "category": category, "opted_out": body.opted_out}
    return Response(answer, status_code=HTTP_202_ACCEPTED)


@post(["/audience/count", "/count"], status_code=HTTP_200_OK, opt={"scope": Scope.READ})
async def audience_count(request: Request[Any, Any, Any]) -> Response[Any]:
    """How many active devices an audience selects: the native ``POST /v1/audience/count``."""
    body = await body_as(request, CountBody)
    recipients: list[dict[str, Any]] = []
    try:
        if body.app_user_id is not None:
            recipients.append({"type": "user", "user": body.app_user_id})
        if body.traits is not None:
            recipients.append({"type": "filter", "filter": trait_filter(body.traits)})
        if body.audience is not None:
            recipients.append({"type": "filter", "filter": audience_filter(body.audience)})
    except TargetError as exc:
        raise ApiError(400, "bad_target", str(exc)) from None
    if not recipients:
        raise ApiError(400, "bad_target", "give appUserId, traits or audience")
    services, app = services_of(request), app_of(request)
    try:
        data = msgspec.convert({"recipients": recipients}, PublishIn)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "bad_target", str(exc)) from None
    entries, _ = stored_recipients(data, services)
    nodes = [parse(e["filter"]) if e["type"] == "filter" else None for e in entries]
    where = recipients_condition(entries, app.id, services.db.dialect, nodes)
    try:
        n, users = await FilterStore(services.db).count(app.id, where, seen_after(services.settings))
    except CountTimeout:
        raise ApiError(503, "count_timeout", "counting took too long; narrow the audience") from None
    return Response({"matched": n, "users": users}, status_code=HTTP_200_OK)


HANDLERS = [get_preferences, put_preference, audience_count]
