"""One mock transport for every provider unit test.

The idea is httpx's ``MockTransport``: a test gives a handler that turns a request into a
response (or an exception, which the transport raises, as a network error would be), and the
transport records what it was asked. It also records concurrency, because several providers
promise to send in parallel and a test has to be able to see that they do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pushgate.providers.transport import HttpRequest, HttpResponse, Transport

Answer = HttpResponse | Exception
Handler = Callable[[HttpRequest], Answer | Awaitable[Answer]]


def json_response(status: int, doc: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    """A JSON answer, as most providers send."""
    head = {"content-type": "application/json", **(headers or {})}
    return HttpResponse(status, head, json.dumps(doc).encode())


class MockTransport(Transport):
    """Answers each request with ``handler(request)`` (plain or async) after ``delay`` seconds.

    ``requests`` holds every request in arrival order; ``max_in_flight`` the highest number of
    requests that were waiting for their answer at once; ``in_flight_log`` the count seen by each
    request on arrival.
    """

    def __init__(self, handler: Handler, *, delay: float = 0.0) -> None:
        self.handler = handler
        self.delay = delay
        self.requests: list[HttpRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_log: list[int] = []
        self.closed = False

    async def request(self, req: HttpRequest) -> HttpResponse:
        self.requests.append(req)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.in_flight_log.append(self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            answer = self.handler(req)
            if isinstance(answer, Awaitable):
                answer = await answer
        finally:
            self.in_flight -= 1
        if isinstance(answer, Exception):
            raise answer
        return answer

    def to(self, url_prefix: str) -> list[HttpRequest]:
        """The recorded requests whose URL starts with ``url_prefix``."""
        return [r for r in self.requests if r.url.startswith(url_prefix)]

    async def aclose(self) -> None:
        self.closed = True
