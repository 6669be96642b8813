"""Which compat front-ends ``pushgate serve`` mounts, where, and whether their routes collide.

Every front-end is on by default at its system's own paths (``[compat.<system>]``: ``enabled``,
``prefix``). Two enabled front-ends (or one and the native API) that would answer the same
method and path make the start fail with a message naming both and the setting that separates
them: a request must never reach a front-end by accident of registration order. A static path
that only *shadows* a parameter of another (gorush's ``/api/push`` over Centrifugo's
``/api/{method}``) is not a collision: the router always prefers the static path, and no
Centrifugo method is called ``push``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from litestar import Router
from litestar.types import ControllerRouterHandler

from pushgate.api.compat import centrifugo, gorush, sentori, sockudo
from pushgate.api.compat import notification_socketio as nsio
from pushgate.config import CompatFrontEnd, ConfigError, Settings


@dataclass(frozen=True, slots=True)
class FrontEnd:
    """One foreign API: its ``[compat.<name>]`` section, what it is called, and how to build
    its handlers (at the system's own paths: the prefix is added here) with the exception
    handlers that answer in its own error shape."""

    name: str
    title: str
    build: Callable[[Settings], Sequence[ControllerRouterHandler]]
    exception_handlers: dict[Any, Any]


#: Every compat front-end, in the order the docs list them.
FRONT_ENDS: tuple[FrontEnd, ...] = (
    FrontEnd("centrifugo", "Centrifugo", centrifugo.build, centrifugo.exception_handlers),
    FrontEnd("sockudo", "Sockudo push API", sockudo.build, sockudo.exception_handlers),
    FrontEnd("sentori", sentori.TITLE, sentori.build, sentori.EXCEPTION_HANDLERS),
    FrontEnd("notification_socketio", nsio.TITLE, nsio.build, nsio.EXCEPTION_HANDLERS),
    FrontEnd("gorush", "gorush", gorush.build, gorush.EXCEPTION_HANDLERS),
)


def section(settings: Settings, name: str) -> CompatFrontEnd:
    found: CompatFrontEnd = getattr(settings.compat, name)
    return found


def compat_routers(
    settings: Settings, native: Iterable[Router] = (), front_ends: Sequence[FrontEnd] | None = None
) -> list[Router]:
    """The routers of the enabled front-ends (``front_ends``: default every one), each under its
    prefix; refuses (ConfigError) a configuration where two of them, or one and the native API,
    would answer the same route."""
    routers: list[tuple[str, Router]] = [("the native API", r) for r in native]
    mine: list[Router] = []
    for front in FRONT_ENDS if front_ends is None else front_ends:
        conf = section(settings, front.name)
        if not conf.enabled:
            continue
        router = Router(
            conf.prefix or "/",
            route_handlers=list(front.build(settings)),
            exception_handlers=front.exception_handlers,
            include_in_schema=False,
        )
        routers.append((f"[compat.{front.name}] ({front.title})", router))
        mine.append(router)
    _check_collisions(routers)
    return mine


_PARAM = re.compile(r"\{[^}]*\}")


def route_keys(router: Router) -> set[tuple[str, str]]:
    """(method, path with every parameter written ``{}``) of each route the router answers."""
    keys: set[tuple[str, str]] = set()
    for route in router.routes:
        path = _PARAM.sub("{}", route.path).rstrip("/") or "/"
        # OPTIONS (and HEAD) are answered for every path by the framework itself.
        keys.update((m, path) for m in _methods(route) if m not in {"OPTIONS", "HEAD"})
    return keys


def _methods(route: Any) -> set[str]:
    return {
        m for handler in getattr(route, "route_handlers", ()) for m in getattr(handler, "http_methods", ())
    }


def _check_collisions(routers: Sequence[tuple[str, Router]]) -> None:
    owner: dict[tuple[str, str], str] = {}
    for who, router in routers:
        for key in sorted(route_keys(router)):
            other = owner.setdefault(key, who)
            if other != who:
                method, path = key
                raise ConfigError(
                    f"{other} and {who} both answer {method} {path}: give one of them its own "
                    'path with `prefix = "/<name>"` in its [compat.<system>] section, or turn one '
                    "off with `enabled = false`"
                )
