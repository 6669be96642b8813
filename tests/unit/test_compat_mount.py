"""Mounting the compat front-ends (api/compat/mount.py): enabled ones under their prefix, a
disabled one absent, and two that would answer one route refused at start with both named."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
from litestar import Router, get, post
from litestar.types import ControllerRouterHandler

from pushgate.api.compat.mount import FrontEnd, compat_routers, route_keys
from pushgate.config import ConfigError, Settings


@get("/api/{method:str}")
async def _method(method: str) -> str:
    return method


@post("/api/push")
async def _push() -> str:
    return "pushed"


@get("/healthz")
async def _health() -> str:
    return "ok"


def _front(name: str, *handlers: ControllerRouterHandler) -> FrontEnd:
    def build(_settings: Settings) -> Sequence[ControllerRouterHandler]:
        return handlers

    return FrontEnd(name, name.title(), build, {})


def _settings(**compat: dict[str, object]) -> Settings:
    return msgspec.convert({"compat": compat}, Settings)


def test_enabled_front_ends_are_mounted_under_their_prefix() -> None:
    fronts = [_front("centrifugo", _method), _front("gorush", _push)]
    routers = compat_routers(_settings(centrifugo={"prefix": "/cf"}), front_ends=fronts)
    assert [sorted(route_keys(r)) for r in routers] == [[("GET", "/cf/api/{}")], [("POST", "/api/push")]]


def test_a_disabled_front_end_is_not_mounted() -> None:
    fronts = [_front("centrifugo", _method), _front("gorush", _push)]
    routers = compat_routers(_settings(gorush={"enabled": False}), front_ends=fronts)
    assert [sorted(route_keys(r)) for r in routers] == [[("GET", "/api/{}")]]


def test_a_static_path_shadowing_a_parameter_is_not_a_collision() -> None:
    # gorush's POST /api/push next to Centrifugo's /api/{method} (a GET here, and a POST below).
    fronts = [_front("centrifugo", _method), _front("gorush", _push)]
    assert len(compat_routers(_settings(), front_ends=fronts)) == 2


def test_two_front_ends_answering_one_route_refuse_the_start_naming_both() -> None:
    fronts = [_front("centrifugo", _method), _front("sentori", _method)]
    with pytest.raises(ConfigError) as caught:
        compat_routers(_settings(), front_ends=fronts)
    message = str(caught.value)
    assert "[compat.centrifugo]" in message and "[compat.sentori]" in message
    assert "GET /api/{}" in message and "prefix" in message
    # The prefix the message suggests separates them.
    assert len(compat_routers(_settings(sentori={"prefix": "/sentori"}), front_ends=fronts)) == 2


def test_a_front_end_answering_a_native_route_is_refused() -> None:
    native = Router("/", route_handlers=[_health])
    with pytest.raises(ConfigError, match=r"the native API and \[compat.gorush\]"):
        compat_routers(_settings(), native=[native], front_ends=[_front("gorush", _health)])
