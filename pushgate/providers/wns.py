"""Windows Push Notification Services (docs/providers.md#wns).

The device token *is* the channel URI: one POST per device, concurrently, with a bearer token
from an OAuth client-credentials grant (the classic ``login.live.com`` endpoint with the
Package SID, or the Entra endpoint of the Windows App SDK). The token is cached for its day
of validity and replaced once when a channel answers 401.

Because every request carries that bearer token, it is only sent to ``*.notify.windows.com``
over https, or to the origin of the configured token endpoint (the provider lab, which plays
both roles); any other channel URI is refused without a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import msgspec

import pushgate.providers.settings as cfg
from pushgate.domain import message_ids, render_wns
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.render_wns import NOTIFY_HOST_SUFFIX, WnsRendered
from pushgate.domain.urls import parse_target
from pushgate.providers import answers
from pushgate.providers.base import (
    Concurrency,
    CredentialInfo,
    HttpUrl,
    Provider,
    ProviderConfigError,
    ProviderSettings,
    ProviderSpec,
    Target,
)
from pushgate.providers.http import parse_retry_after
from pushgate.providers.oauth import ClientCredentials, OAuthError
from pushgate.providers.outbound import checked_url, is_foreign, transport_failure
from pushgate.providers.transport import HttpRequest, HttpResponse, Transport, TransportError

__all__ = ["WnsProvider", "classify_wns_response"]

log = logging.getLogger(__name__)

CLASSIC_TOKEN_URL = "https://login.live.com/accesstoken.srf"
ENTRA_TOKEN_URL = "https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"
#: Microsoft's token hosts: the only ones an uploaded credential may name (``ProviderSpec.hosts``).
HOSTS = frozenset({"login.live.com", "login.microsoftonline.com"})
CLASSIC_SCOPE = "notify.windows.com"
ENTRA_SCOPE = "https://wns.windows.com/.default"
#: Wait this long after a 406 (throttled) that carries no ``X-WNS-CONTINUE-AFTER``.
DEFAULT_THROTTLE_WAIT = 60.0

_CREDENTIAL_HINTS = {
    401: "WNS rejected the access token twice (check wns.package_sid and wns.client_secret)",
    403: "the access token's app does not own this channel (check wns.package_sid: another app?)",
}


def _origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` as the HTTP client reads them; ValueError for a URL it would
    read differently from another parser (``domain/urls.py``)."""
    target = parse_target(url)
    return target.scheme, target.host, target.port


def classify_wns_response(resp: HttpResponse) -> SendResult:
    """Map one notify answer onto an :class:`Outcome` (docs/providers.md#wns table).

    A 401 comes back as CREDENTIAL; :class:`WnsProvider` intercepts it first to replace the
    access token and retry once.
    """
    status = resp.status
    code = f"http_{status}"
    description = resp.headers.get("x-wns-error-description") or None
    if 200 <= status < 300:
        wns_status = resp.headers.get("x-wns-status")
        if wns_status and wns_status != "received":
            log.debug("wns: notification accepted with X-WNS-Status %s", wns_status)
        return SendResult(Outcome.SENT, provider_message_id=resp.headers.get("x-wns-msg-id"))
    if status in (404, 410):
        message = description or ("channel expired" if status == 410 else "channel URI not valid")
        return SendResult(Outcome.DEVICE_TERMINAL, error_code=code, error_message=message)
    if status in (401, 403):
        return SendResult(
            Outcome.CREDENTIAL, error_code=code, error_message=description or _CREDENTIAL_HINTS[status]
        )
    if status == 406:
        wait = parse_retry_after(resp.headers.get("x-wns-continue-after"))
        return SendResult(
            Outcome.QUOTA,
            error_code=code,
            error_message=description or "channel throttled",
            retry_after=wait if wait is not None else DEFAULT_THROTTLE_WAIT,
        )
    if status == 429 or status >= 500:
        return SendResult(
            Outcome.QUOTA if status == 429 else Outcome.PROVIDER_TRANSIENT,
            error_code=code,
            error_message=description,
            retry_after=parse_retry_after(resp.headers.get("retry-after")),
        )
    if status == 413:
        return SendResult(
            Outcome.PAYLOAD, error_code=code, error_message=description or "body over 5000 bytes"
        )
    # 400 (bad/conflicting headers or XML), 405, anything else: our request is wrong.
    return SendResult(Outcome.PAYLOAD, error_code=code, error_message=description)


class WnsSettings(ProviderSettings, forbid_unknown_fields=True, omit_defaults=True):
    """Windows Push Notification Services: package SID + secret (classic or Entra token endpoint)."""

    package_sid: str | None = None
    client_secret: str | None = None
    #: ``classic`` (login.live.com) or ``entra`` (login.microsoftonline.com).
    auth: Literal["classic", "entra"] = "classic"
    tenant_id: str | None = None
    #: ``entra`` only: the Entra application (client) id; defaults to ``package_sid``.
    client_id: str | None = None
    token_url: HttpUrl | None = None
    concurrency: Concurrency = 200


def describe(s: WnsSettings) -> CredentialInfo:
    return CredentialInfo(f"package {s.package_sid or '?'}")


class WnsProvider(Provider):
    """Sends to WNS for one app (Package SID + secret)."""

    name: ClassVar[str] = "wns"
    message_ids = True

    def __init__(
        self,
        *,
        transport: Transport,
        client_id: str,
        client_secret: str,
        token_url: str,
        scope: str,
        concurrency: int = 200,
        timeout: float | None = None,
        trusted_hosts: frozenset[str] | None = None,
    ) -> None:
        """``trusted_hosts``: answers from other hosts lose their text (None: trust any)."""
        self._transport = transport
        self.client_id = client_id
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self._token_origin = _origin(token_url)
        self.oauth = ClientCredentials(
            transport,
            token_url,
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "scope": scope,
            },
            name="wns",
            refresh_margin=300.0,
            default_lifetime=86400.0,
            timeout=timeout,
            foreign=is_foreign(token_url, trusted_hosts),
        )

    @classmethod
    async def create(cls, settings: WnsSettings | Mapping[str, Any], transport: Transport) -> WnsProvider:
        """Check ``[wns]``; no network I/O (the first send fetches the token)."""
        s = cfg.section(WnsSettings, "wns", settings)
        package_sid = cfg.required(s.package_sid, "wns", "package_sid")
        secret = cfg.required(s.client_secret, "wns", "client_secret")
        if s.auth == "classic":
            default_url, scope, client_id = CLASSIC_TOKEN_URL, CLASSIC_SCOPE, package_sid
        else:
            tenant = cfg.optional(s.tenant_id)
            if tenant is None and not s.token_url:
                raise ProviderConfigError("wns.tenant_id: required when wns.auth = 'entra'")
            default_url = ENTRA_TOKEN_URL.format(tenant_id=tenant or "common")
            scope = ENTRA_SCOPE
            client_id = cfg.optional(s.client_id) or package_sid
        return cls(
            transport=transport,
            client_id=client_id,
            client_secret=secret,
            token_url=checked_url("wns.token_url", s.token_url or default_url),
            scope=scope,
            concurrency=s.concurrency,
            timeout=s.timeout,
            trusted_hosts=s.trusted_hosts(HOSTS),
        )

    def _channel_allowed(self, uri: str) -> bool:
        try:
            scheme, host, port = _origin(uri)
        except ValueError:
            return False
        if scheme == "https" and host.endswith(NOTIFY_HOST_SUFFIX):
            return True
        return (scheme, host, port) == self._token_origin

    async def send_batch(self, rendered: Any, targets: Sequence[Target]) -> list[SendResult]:
        """POST the rendered notification to every target's channel URI; results in order."""
        if not targets:
            return []
        rendered, publish_id = message_ids.unwrap(rendered)
        if not isinstance(rendered, WnsRendered):
            raise TypeError("rendered WNS notification must be a WnsRendered")
        try:
            access_token = await self.oauth.get()
        except OAuthError as exc:
            log.warning("wns: OAuth token exchange failed: %s", exc)
            return [exc.result() for _ in targets]
        if publish_id is None or rendered.type != "raw":
            # Toast, tile and badge XML carry no message ids (docs/receipts.md).
            sends = (answers.one(self.name, self._send_one(rendered, t.token, access_token)) for t in targets)
        else:
            # A raw JSON object body: the ids are its first key, the delivery id spliced per target.
            body = message_ids.prepend(rendered.body, message_ids.object_value(publish_id))
            sends = (
                answers.one(
                    self.name,
                    self._send_one(
                        msgspec.structs.replace(rendered, body=body.body(t.recipient_id)),
                        t.token,
                        access_token,
                    ),
                )
                for t in targets
            )
        return list(await asyncio.gather(*sends))

    async def _send_one(self, rendered: WnsRendered, uri: str, access_token: str) -> SendResult:
        if not self._channel_allowed(uri):
            return SendResult(
                Outcome.DEVICE_TERMINAL,
                error_code="invalid_channel_uri",
                error_message="channel URI is not https on *.notify.windows.com",
            )
        async with self._semaphore:
            try:
                resp = await self._post(rendered, uri, access_token)
                if resp.status == 401:
                    try:
                        access_token = await self.oauth.get(stale=access_token)
                    except OAuthError as exc:
                        return exc.result()
                    resp = await self._post(rendered, uri, access_token)
            except TransportError as exc:
                return transport_failure(exc)
        result = classify_wns_response(resp)
        if result.outcome is Outcome.CREDENTIAL:
            log.warning("wns: credential error %s: %s", result.error_code, result.error_message)
        return result

    async def _post(self, rendered: WnsRendered, uri: str, access_token: str) -> HttpResponse:
        headers = {**rendered.headers, "Authorization": f"Bearer {access_token}"}
        return await self._transport.request(HttpRequest("POST", uri, headers, rendered.body, self._timeout))


def channel_origin(uri: str) -> str | None:
    """The WNS origin a channel URI names (its breaker's key): ``scheme://host[:port]``, the
    port only when it is not the scheme's default, as the transport's parser reads it."""
    try:
        return parse_target(uri).origin
    except ValueError:
        return None


SPEC = ProviderSpec(
    name="wns",
    settings=WnsSettings,
    provider=WnsProvider,
    renderer=render_wns.RENDERER,
    platforms=frozenset({"windows"}),
    describe=describe,
    token_rule=lambda token, lab: render_wns.normalize_token(token, allow_lab=lab),
    hosts=HOSTS,
    urls=lambda s: [("token_url", s.token_url)],
    origin_of=channel_origin,
)
