"""Policy routes (docs/policy.md): the app's policy, its categories, users' preferences and quiet hours.

Scopes follow ``domain/scopes.py``: reads need ``read``; ``/v1/policy`` and ``/v1/categories``
writes need ``admin``; ``/v1/users/{user}/…`` writes (a user's own choices) need ``register``,
like the user's channel bindings.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pushgate.api.errors import ApiError, bad_request, error_responses, not_found
from pushgate.api.schemas_policy import (
    AppPolicyIn,
    AppPolicyOut,
    CategoryIn,
    CategoryOut,
    CategoryPage,
    CategoryUpdateIn,
    PolicyOut,
    PreferenceIn,
    PreferencesIn,
    PreferencesOut,
    QuietHoursIn,
    QuietHoursOut,
    UserQuietHoursOut,
)
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.registry import valid_timezone
from pushgate.store.policies import Category, CategoryExists, PolicyStore

MAX_USER = 200


def _check_zone(name: str | None, field: str) -> None:
    if name is not None and not valid_timezone(name):
        raise bad_request(f"{field}: {name!r} is not an IANA time zone (e.g. Europe/Paris)")


def _seconds(time_of_day: str) -> int:
    hours, minutes, *rest = time_of_day.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + (int(rest[0]) if rest else 0)


def quiet_hours_body(data: QuietHoursIn, field: str = "body") -> dict[str, Any]:
    """The stored form (every key present), after the checks the schema cannot make."""
    prefix = "" if field == "body" else f"{field}."
    _check_zone(data.timezone, f"{prefix}timezone")
    if _seconds(data.start) == _seconds(data.end):
        raise bad_request(f"{prefix}end: must differ from start (the window would be empty)")
    return {"start": data.start, "end": data.end, "timezone": data.timezone, "action": data.action}


def policy_body(data: AppPolicyIn) -> dict[str, Any]:
    """``AppPolicyIn`` as stored in ``app_policies`` (the shape ``domain/policy.py`` reads)."""
    _check_zone(data.default_timezone, "default_timezone")
    quiet = None if data.quiet_hours is None else quiet_hours_body(data.quiet_hours, "quiet_hours")
    caps = [
        {
            "limit": c.limit,
            "window_seconds": c.window_seconds,
            "per": c.per,
            "category": c.category,
            "action": c.action,
        }
        for c in data.frequency_caps
    ]
    return {"default_timezone": data.default_timezone, "quiet_hours": quiet, "frequency_caps": caps}


def _check_user(user: str) -> None:
    if not user or len(user) > MAX_USER:
        raise bad_request(f"user: must be 1-{MAX_USER} characters")


def _category_out(c: Category) -> CategoryOut:
    return CategoryOut(id=c.id, description=c.description, default_opt_in=c.default_opt_in, source=c.source)


def _policy_out(policy: dict[str, Any], source: Literal["api", "config"]) -> PolicyOut:
    return PolicyOut(source=source, policy=msgspec.convert(policy, AppPolicyOut))


async def _preferences(store: PolicyStore, app_id: str, user: str) -> PreferencesOut:
    known = await store.categories_of(app_id)
    chosen = await store.get_preferences(app_id, user)
    effective = {cid: chosen.get(cid, c.default_opt_in) for cid, c in sorted(known.items())}
    return PreferencesOut(user=user, categories=effective, explicit=sorted(c for c in chosen if c in known))


class PolicyController(Controller):
    path = "/"
    tags = ["policy"]

    @get("/policy", summary="The app's effective policy", responses=error_responses(401))
    async def get_policy(self, app: AppDep, services: ServicesDep) -> PolicyOut:
        policy, source = await services.policies.effective_policy(app.id)
        return _policy_out(policy, source)

    @put("/policy", summary="Replace the app's policy", responses=error_responses(400, 401))
    async def put_policy(self, data: JSONBody[AppPolicyIn], app: AppDep, services: ServicesDep) -> PolicyOut:
        body = policy_body(data)
        await services.policies.put_app_policy(app.id, body)
        return _policy_out(body, "api")

    @delete(
        "/policy",
        status_code=HTTP_200_OK,
        summary="Return to the configured policy",
        responses=error_responses(401),
    )
    async def delete_policy(self, app: AppDep, services: ServicesDep) -> PolicyOut:
        await services.policies.delete_app_policy(app.id)
        return _policy_out(await services.policies.configured_policy(app.id), "config")

    @post(
        "/categories",
        status_code=HTTP_201_CREATED,
        summary="Create a category",
        responses=error_responses(400, 401, 409),
    )
    async def create_category(
        self, data: JSONBody[CategoryIn], app: AppDep, services: ServicesDep
    ) -> CategoryOut:
        try:
            created = await services.policies.create_category(
                app.id, data.id, data.description, data.default_opt_in
            )
        except CategoryExists as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return _category_out(created)

    @get("/categories", summary="The app's categories", responses=error_responses(401))
    async def list_categories(self, app: AppDep, services: ServicesDep) -> CategoryPage:
        return CategoryPage([_category_out(c) for c in await services.policies.list_categories(app.id)])

    @get("/categories/{category:str}", summary="One category", responses=error_responses(401, 404))
    async def get_category(self, category: FromPath[str], app: AppDep, services: ServicesDep) -> CategoryOut:
        found = await services.policies.get_category(app.id, category)
        if found is None:
            raise not_found("category", category)
        return _category_out(found)

    @put("/categories/{category:str}", summary="Change a category", responses=error_responses(400, 401, 404))
    async def update_category(
        self, category: FromPath[str], data: JSONBody[CategoryUpdateIn], app: AppDep, services: ServicesDep
    ) -> CategoryOut:
        changed = await services.policies.update_category(
            app.id, category, data.description, data.default_opt_in
        )
        if changed is None:
            raise not_found("category", category)
        return _category_out(changed)

    @delete(
        "/categories/{category:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a category",
        responses=error_responses(401, 404, 409),
    )
    async def delete_category(self, category: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        if await services.policies.delete_category(app.id, category):
            return
        if await services.policies.get_category(app.id, category) is not None:
            raise ApiError(
                409,
                "conflict",
                f"category {category!r} is defined in the configuration; remove it there "
                f"(PUT /v1/categories/{category} changes it)",
            )
        raise not_found("category", category)

    @get(
        "/users/{user:str}/preferences",
        summary="A user's choice for every category",
        responses=error_responses(400, 401),
    )
    async def get_preferences(
        self, user: FromPath[str], app: AppDep, services: ServicesDep
    ) -> PreferencesOut:
        _check_user(user)
        return await _preferences(services.policies, app.id, user)

    @put(
        "/users/{user:str}/preferences",
        summary="Set a user's choices for the categories named",
        responses=error_responses(400, 401),
    )
    async def put_preferences(
        self, user: FromPath[str], data: JSONBody[PreferencesIn], app: AppDep, services: ServicesDep
    ) -> PreferencesOut:
        _check_user(user)
        known = await services.policies.categories_of(app.id)
        unknown = sorted(c for c in data.categories if c not in known)
        if unknown:
            raise bad_request(
                f"categories: unknown categor{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(repr(c) for c in unknown)} (GET /v1/categories lists them)",
                {"unknown": unknown},
            )
        await services.policies.set_preferences(app.id, user, data.categories)
        return await _preferences(services.policies, app.id, user)

    @put(
        "/users/{user:str}/preferences/{category:str}",
        summary="Set a user's choice for one category",
        responses=error_responses(400, 401, 404),
    )
    async def put_preference(
        self,
        user: FromPath[str],
        category: FromPath[str],
        data: JSONBody[PreferenceIn],
        app: AppDep,
        services: ServicesDep,
    ) -> PreferencesOut:
        _check_user(user)
        if await services.policies.category_default(app.id, category) is None:
            raise not_found("category", category)
        await services.policies.set_preference(app.id, user, category, data.opted_in)
        return await _preferences(services.policies, app.id, user)

    @delete(
        "/users/{user:str}/preferences/{category:str}",
        status_code=HTTP_200_OK,
        summary="Forget a user's choice for one category (its default applies)",
        responses=error_responses(400, 401),
    )
    async def delete_preference(
        self, user: FromPath[str], category: FromPath[str], app: AppDep, services: ServicesDep
    ) -> PreferencesOut:
        _check_user(user)
        await services.policies.delete_preference(app.id, user, category)
        return await _preferences(services.policies, app.id, user)

    @get(
        "/users/{user:str}/quiet_hours",
        summary="A user's own quiet hours",
        responses=error_responses(400, 401, 404),
    )
    async def get_quiet_hours(
        self, user: FromPath[str], app: AppDep, services: ServicesDep
    ) -> UserQuietHoursOut:
        _check_user(user)
        found = await services.policies.get_user_quiet_hours(app.id, user)
        if found is None:
            raise not_found("quiet hours of user", user)
        return UserQuietHoursOut(user=user, quiet_hours=msgspec.convert(found, QuietHoursOut))

    @put(
        "/users/{user:str}/quiet_hours",
        summary="Set a user's quiet hours",
        responses=error_responses(400, 401),
    )
    async def put_quiet_hours(
        self, user: FromPath[str], data: JSONBody[QuietHoursIn], app: AppDep, services: ServicesDep
    ) -> UserQuietHoursOut:
        _check_user(user)
        body = quiet_hours_body(data)
        await services.policies.put_user_quiet_hours(app.id, user, body)
        return UserQuietHoursOut(user=user, quiet_hours=msgspec.convert(body, QuietHoursOut))

    @delete(
        "/users/{user:str}/quiet_hours",
        status_code=HTTP_204_NO_CONTENT,
        summary="Remove a user's quiet hours (the app's apply)",
        responses=error_responses(400, 401, 404),
    )
    async def delete_quiet_hours(self, user: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        _check_user(user)
        if not await services.policies.delete_user_quiet_hours(app.id, user):
            raise not_found("quiet hours of user", user)
