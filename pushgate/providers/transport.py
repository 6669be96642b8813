"""The provider HTTP transport: one method, swappable.

Modelled on httpx's transport: everything about pools, HTTP/2 and TLS hides behind
``request``. Provider modules build an :class:`HttpRequest`, the transport returns an
:class:`HttpResponse` or raises :class:`TransportError` (connection refused/reset, timeout),
which providers classify as retryable.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass(slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Per-request timeout in seconds; ``None`` uses the transport default.
    timeout: float | None = None


@dataclass(slots=True)
class HttpResponse:
    status: int
    #: Header names are lower-case.
    headers: dict[str, str]
    body: bytes


class TransportError(Exception):
    """The request did not produce an HTTP response (network error, timeout)."""

    #: The delivery record's ``error_code`` for this failure.
    code: str = "network"


class ResponseTooLarge(TransportError):
    """The answer's body passed the transport's cap; reading stopped there (a real provider's
    answer is a few hundred bytes, so this is a broken or hostile server)."""

    code = "response_too_large"


class Transport(abc.ABC):
    @abc.abstractmethod
    async def request(self, req: HttpRequest) -> HttpResponse:
        """Send one request and return the full response."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""
