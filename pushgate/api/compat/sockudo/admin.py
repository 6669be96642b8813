"""``deadLetters``, ``templates``, ``credentials`` and ``deliveryStatus`` (docs/compat.md, Sockudo)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.params import FromPath

from pushgate.api.compat.sockudo import auth
from pushgate.api.compat.sockudo.shapes import not_supported


@post("/deliveryStatus", status_code=202)
async def delivery_status(request: Request[Any, Any, Any], app_id: FromPath[str]) -> None:
    await auth.authorize(request, app_id)
    raise not_supported("POST deliveryStatus")


@get("/deadLetters")
async def dead_letters(request: Request[Any, Any, Any], app_id: FromPath[str]) -> None:
    await auth.authorize(request, app_id)
    raise not_supported("GET deadLetters")


HANDLERS = [delivery_status, dead_letters]
