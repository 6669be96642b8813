"""One way to wait for something in a test: ``wait_for(predicate, timeout, what)``.

Hand-written poll loops each chose their own interval, deadline and failure text, and some
forgot the failure (the loop ran out and the test went on to a confusing assertion). Here the
timeout is always explicit and the failure always names what was awaited and the last value
seen, so a slow or stuck gateway fails in one readable line.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

Message = str | Callable[[], str]


def _message(what: Message, timeout: float, last: Any) -> str:
    text = what() if callable(what) else what
    return f"timed out after {timeout} s waiting for {text} (last value: {last!r})"


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T | None]],
    timeout: float,  # noqa: ASYNC109 (a poll deadline, not a cancellation scope)
    what: Message,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,  # noqa: ASYNC109
    what: Message,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float,  # noqa: ASYNC109
    what: Message,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call ``predicate`` (plain or async) every ``interval`` seconds until it returns something
    truthy, and return that; raise ``AssertionError`` naming ``what`` after ``timeout`` seconds.

    Exceptions of the ``ignore`` types count as "not yet" (a server still starting up refuses
    connections); any other exception fails the wait at once.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = value
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(_message(what, timeout, last))
        await asyncio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], T | None],
    timeout: float,
    what: Message,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """``wait_for`` for a test that has no event loop (a command-line program started with
    ``subprocess``): the same contract, sleeping with ``time.sleep``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(_message(what, timeout, last))
        time.sleep(interval)
