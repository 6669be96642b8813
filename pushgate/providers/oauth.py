"""OAuth 2.0 access tokens for the providers that use them (FCM, HMS, WNS).

HMS and WNS use the client-credentials grant, FCM the JWT-bearer grant (a freshly signed
assertion per exchange). Every one of them throttles clients that fetch tokens too often, and a
fan-out of thousands of requests must not turn into thousands of token exchanges, so a token is
cached until shortly before it expires (halfway through, for short-lived tokens) and at most
one exchange is in flight per credential. A token a provider
rejects (``stale``) is replaced once; concurrent requests that saw the same rejection share the
replacement instead of each fetching their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

import msgspec

from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.providers import answers
from pushgate.providers.outbound import REFUSED_CODE, OutboundRefused, bounded
from pushgate.providers.transport import HttpRequest, Transport, TransportError

__all__ = ["ClientCredentials", "OAuthError"]

log = logging.getLogger(__name__)

_json_decode = answers.decode_json
#: Monotonic clock, a module attribute so tests can move time for this module alone.
_clock = time.monotonic


class OAuthError(Exception):
    """The token exchange failed; ``retryable`` says whether trying later can help, ``refused``
    that pushgate would not connect to the token endpoint (``[outbound]``)."""

    def __init__(self, message: str, *, retryable: bool, refused: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.refused = refused

    def result(self) -> SendResult:
        """What the failed exchange means for each target that needed the token."""
        if self.refused:
            return SendResult(Outcome.PAYLOAD, error_code=REFUSED_CODE, error_message=str(self))
        outcome = Outcome.PROVIDER_TRANSIENT if self.retryable else Outcome.CREDENTIAL
        return SendResult(outcome, error_code="oauth_failed", error_message=str(self))


class ClientCredentials:
    """A cached bearer token from an OAuth token exchange.

    ``form`` holds the grant's fields (``grant_type``, ``client_id``, ``client_secret``,
    ``scope``…), or builds them per exchange (FCM signs a new assertion each time); it is sent as
    ``application/x-www-form-urlencoded``, as Google, Huawei and Microsoft require. Error
    messages never include the secret.
    """

    def __init__(
        self,
        transport: Transport,
        token_url: str,
        form: Mapping[str, str] | Callable[[], Mapping[str, str]],
        *,
        name: str,
        refresh_margin: float = 300.0,
        default_lifetime: float = 3600.0,
        timeout: float | None = None,
        foreign: bool = False,
    ) -> None:
        self._transport = transport
        #: The token endpoint is not the provider's own host: its error text is not repeated.
        self._foreign = foreign
        self.token_url = token_url
        self._form = form
        self._name = name
        self._margin = refresh_margin
        self._default_lifetime = default_lifetime
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._token: str | None = None
        #: Monotonic time after which the cached token is replaced before use.
        self._refresh_at = 0.0
        #: Token exchanges made so far (tests and metrics read it).
        self.fetches = 0

    def _fresh(self, stale: str | None) -> str | None:
        token = self._token
        if token is not None and token != stale and _clock() < self._refresh_at:
            return token
        return None

    async def get(self, stale: str | None = None) -> str:
        """A valid access token; fetched when missing, near expiry, or equal to ``stale``.

        ``stale`` is the token the provider just rejected: if another coroutine already
        replaced it while this one waited for the lock, the replacement is returned without a
        second exchange.
        """
        token = self._fresh(stale)
        if token is not None:
            return token
        async with self._lock:
            token = self._fresh(stale)
            if token is not None:
                return token
            if stale is not None and self._token == stale:
                self._token = None
            return await self._fetch()

    def invalidate(self) -> None:
        """Drop the cached token (credentials rotated)."""
        self._token = None

    async def _fetch(self) -> str:
        self.fetches += 1
        form = self._form() if callable(self._form) else self._form
        req = HttpRequest(
            "POST",
            self.token_url,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            urlencode(dict(form)).encode("ascii"),
            self._timeout,
        )
        try:
            resp = await self._transport.request(req)
        except OutboundRefused as exc:
            raise OAuthError(f"{self._name} token endpoint: {exc}", retryable=False, refused=True) from None
        except TransportError as exc:
            raise OAuthError(f"{self._name} token endpoint unreachable: {exc}", retryable=True) from None
        try:
            doc = _json_decode(resp.body)
        except msgspec.DecodeError:
            doc = None
        if resp.status != 200:
            text = resp.body[:200].decode("utf-8", "replace").strip()
            if isinstance(doc, dict) and "error" in doc:
                text = str(doc.get("error"))
                if doc.get("error_description"):
                    text += f": {doc['error_description']}"
            if self._foreign:
                text = "(not the provider's own host: its answer is not shown)"
            raise OAuthError(
                bounded(f"{self._name} token endpoint answered {resp.status}: {text}"),
                retryable=resp.status >= 500 or resp.status == 429,
            )
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise OAuthError(f"{self._name} token endpoint answer has no access_token", retryable=False)
        lifetime = self._default_lifetime
        raw = doc.get("expires_in") if isinstance(doc, dict) else None
        if isinstance(raw, int | float | str) and not isinstance(raw, bool):
            try:
                lifetime = float(raw)
            except ValueError:
                pass
        self._token = token
        # A short-lived token is refreshed halfway through rather than never being "fresh".
        self._refresh_at = _clock() + lifetime - min(self._margin, lifetime / 2)
        log.debug("%s: new access token, valid %.0f s", self._name, lifetime)
        return token
