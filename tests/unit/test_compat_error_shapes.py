"""Each compat front-end's error answers through ``api/compat/errors.py`` (``reshaped``): the
same as each front-end wrote before the handlers were shared (what its clients parse)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Response
from litestar.exceptions import NotAuthorizedException

from pushgate.api.compat import notification_socketio as nsio
from pushgate.api.compat.gorush import routes as gorush
from pushgate.api.errors import ApiError
from pushgate.store.faults import StorageFault, StorageUnavailable


def _answer(handlers: dict[Any, Any], exc: Exception) -> Response[Any]:
    for cls in type(exc).__mro__:
        if cls in handlers:
            answer: Response[Any] = handlers[cls](None, exc)
            return answer
    raise AssertionError(f"no handler for {exc!r}")


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def test_notification_socketio_keeps_the_originals_500() -> None:
    answer = _answer(nsio.EXCEPTION_HANDLERS, RuntimeError("boom"))
    assert (answer.status_code, answer.content) == (500, "Internal Server Error")
    assert answer.headers["X-Pushgate-Error"] == "Internal Server Error"


def test_notification_socketio_and_gorush_answers() -> None:
    storage = StorageUnavailable(StorageFault("disk_full", "disk full", 0.0))
    rate = ApiError(429, "rate_limited", "slow down", headers={"Retry-After": "3"})
    assert _answer(nsio.EXCEPTION_HANDLERS, NotAuthorizedException()).content == b""
    assert _answer(nsio.EXCEPTION_HANDLERS, ApiError(400, "invalid_request", "x")).content == nsio.BAD_REQUEST
    for handlers in (nsio.EXCEPTION_HANDLERS, gorush.EXCEPTION_HANDLERS):
        assert _answer(handlers, storage).headers["Retry-After"] == "5"
        assert _answer(handlers, storage).status_code == 503
        assert _answer(handlers, rate).headers["Retry-After"] == "3"
    assert _answer(gorush.EXCEPTION_HANDLERS, RuntimeError("boom")).content == {
        "code": 500,
        "message": "internal error",
    }
