"""``/v1/templates`` (docs/templates.md): the app's versioned notification templates.

Scopes as for the other configuration routes (``/v1/categories``): reads need ``read``,
writes ``admin`` (``domain/scopes.py``'s default for a write). Every template is compiled when
it is written, so a syntax error or a construct the sandbox refuses is a 400 then, not a
failed publish later.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pushgate.api.errors import ApiError, bad_request, error_responses, not_found
from pushgate.api.schemas_template import MAX_VERSION, TemplateCreate, TemplateOut, TemplatePage
from pushgate.api.services import AppDep, ServicesDep
from pushgate.domain.personalize import TemplateBody, check_body
from pushgate.domain.templating import TemplateError
from pushgate.domain.timefmt import rfc3339
from pushgate.store.templates import Template, TemplateExists

#: Fields of ``TemplateBody`` (what is stored), in the order they are written.
_BODY_FIELDS = TemplateBody.__struct_fields__


def stored_body(data: TemplateBody) -> dict[str, Any]:
    """The template as stored, after compiling every field (400 naming the field otherwise)."""
    body = {name: getattr(data, name) for name in _BODY_FIELDS}
    checked = msgspec.convert(msgspec.to_builtins(body), TemplateBody)
    try:
        check_body(checked)
    except TemplateError as exc:
        raise bad_request(f"{exc.field}: {exc.reason}") from None
    if checked.default_locale is not None and checked.default_locale not in (checked.locales or {}):
        raise bad_request(
            f"default_locale: {checked.default_locale!r} is not one of locales "
            f"({', '.join(checked.locales or {}) or 'none given'})"
        )
    stored: dict[str, Any] = msgspec.to_builtins(checked)
    return stored


def template_out(t: Template) -> TemplateOut:
    return msgspec.convert(
        {
            **t.body,
            "id": t.id,
            "version": t.version,
            "created_at": rfc3339(t.created_at),
            "updated_at": rfc3339(t.updated_at),
        },
        TemplateOut,
    )


class TemplateController(Controller):
    path = "/templates"
    tags = ["templates"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create a template (version 1)",
        responses=error_responses(400, 401, 403, 409),
    )
    async def create_template(
        self, data: JSONBody[TemplateCreate], app: AppDep, services: ServicesDep
    ) -> TemplateOut:
        body = stored_body(data)
        try:
            made = await services.templates.create(app.id, data.id, body)
        except TemplateExists as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return template_out(made)

    @get("/", summary="The app's templates (current versions)", responses=error_responses(401))
    async def list_templates(self, app: AppDep, services: ServicesDep) -> TemplatePage:
        return TemplatePage([template_out(t) for t in await services.templates.list(app.id)])

    @get(
        "/{template_id:str}",
        summary="A template (current or given version)",
        responses=error_responses(400, 401, 404),
    )
    async def get_template(
        self,
        template_id: FromPath[str],
        app: AppDep,
        services: ServicesDep,
        version: Annotated[int | None, QueryParameter(ge=1, le=MAX_VERSION)] = None,
    ) -> TemplateOut:
        found = await services.templates.get(app.id, template_id, version)
        if found is None:
            what = "template" if version is None else f"version {version} of template"
            raise not_found(what, template_id)
        return template_out(found)

    @put(
        "/{template_id:str}",
        summary="Replace a template (adds a version)",
        responses=error_responses(400, 401, 403, 404),
    )
    async def replace_template(
        self, template_id: FromPath[str], data: JSONBody[TemplateBody], app: AppDep, services: ServicesDep
    ) -> TemplateOut:
        body = stored_body(data)
        changed = await services.templates.replace(app.id, template_id, body)
        if changed is None:
            raise not_found("template", template_id)
        return template_out(changed)

    @delete(
        "/{template_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a template (accepted publishes keep their copy)",
        responses=error_responses(401, 403, 404),
    )
    async def delete_template(self, template_id: FromPath[str], app: AppDep, services: ServicesDep) -> None:
        if not await services.templates.delete(app.id, template_id):
            raise not_found("template", template_id)
