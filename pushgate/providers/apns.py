"""Apple Push Notification service, HTTP/2 provider API (docs/providers.md#apns).

One ``POST /3/device/<token>`` per device, multiplexed as HTTP/2 streams over one long-lived
connection per APNs host. Token auth signs an ES256 JWT with the team's ``.p8`` key; certificate
auth presents a TLS client certificate (``.p12`` or PEM) and sends no ``authorization``.

Stream limits: the HTTP/2 client is hyper's (through pyreqwest), whose ``h2`` layer never opens
more streams than the server's ``SETTINGS_MAX_CONCURRENT_STREAMS`` allows; requests beyond it
wait in hyper's queue for a free stream instead of failing (checked against the lab, which
counts open streams per connection). APNs advertises one stream until a request with a valid
token succeeds, and a fresh connection starts with hyper's default of 100 until the server's
SETTINGS frame arrives, so this provider sends requests one at a time on each host until one
of them was authenticated; only then does it open up to ``concurrency`` streams. A network
error (possibly a new connection) closes that gate again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import jwt
import msgspec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import pushgate.providers.settings as cfg
from pushgate.domain import message_ids, render_apns
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.registry import mask_token
from pushgate.domain.render_apns import ApnsRendered, topic_for
from pushgate.providers import answers
from pushgate.providers.apns_credentials import (
    ApnsSettings,
    ClientIdentity,
    describe,
    load_auth,
    load_ca,
)
from pushgate.providers.base import Provider, ProviderSpec, Target
from pushgate.providers.http import PyreqwestTransport, parse_retry_after
from pushgate.providers.outbound import checked_url, foreign_answer, is_foreign, transport_failure
from pushgate.providers.transport import HttpRequest, HttpResponse, Transport, TransportError

__all__ = ["ApnsProvider", "JwtSigner", "classify_apns_response"]

log = logging.getLogger(__name__)

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
#: Apple's own hosts: the only ones an uploaded credential may name (``ProviderSpec.hosts``).
HOSTS = frozenset({"api.push.apple.com", "api.sandbox.push.apple.com", "api.development.push.apple.com"})
#: Re-mint the provider JWT after this long: Apple forbids more often than every 20 min and
#: rejects an ``iat`` older than 60 min; 45 min leaves margin on both sides for clock skew.
JWT_REFRESH_AFTER = 45 * 60.0
JWT_MIN_AGE = 20 * 60.0
JWT_MAX_AGE = 60 * 60.0

_DEVICE_TERMINAL_400 = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})
_json_decode = answers.decode_json
_UID_OID = x509.ObjectIdentifier("0.9.2342.19200300.100.1.1")


# --------------------------------------------------------------------------- classification


def _reason(body: bytes) -> tuple[str | None, int | None]:
    """``(reason, timestamp)`` from an APNs error body ``{"reason": ..., "timestamp": ms}``."""
    if not body:
        return None, None
    try:
        doc = _json_decode(body)
    except msgspec.DecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    reason = doc.get("reason")
    ts = doc.get("timestamp")
    return (
        reason if isinstance(reason, str) else None,
        ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
    )


def classify_apns_response(resp: HttpResponse, sent_id: str | None = None) -> SendResult:
    """Map one APNs answer onto an :class:`Outcome`, row by row from docs/providers.md#apns.

    ``ExpiredProviderToken`` comes back as CREDENTIAL: :class:`ApnsProvider` intercepts it first
    to re-mint the JWT and retry once, so reaching this function with it means the fresh JWT
    was refused too. ``TooManyProviderTokenUpdates`` is CREDENTIAL as well: it means JWT churn,
    which retrying the same way would only prolong.
    """
    status = resp.status
    if status == 200:
        return SendResult(Outcome.SENT, provider_message_id=resp.headers.get("apns-id") or sent_id)
    reason, timestamp = _reason(resp.body)
    code = reason or f"http_{status}"
    retry_after = parse_retry_after(resp.headers.get("retry-after"))
    if status == 400:
        if reason in _DEVICE_TERMINAL_400:
            return SendResult(Outcome.DEVICE_TERMINAL, error_code=code)
        if reason == "IdleTimeout":
            return SendResult(
                Outcome.PROVIDER_TRANSIENT, error_code=code, error_message="connection idle; reconnect"
            )
        return SendResult(Outcome.PAYLOAD, error_code=code)
    if status == 403:
        return SendResult(Outcome.CREDENTIAL, error_code=code, error_message=_CREDENTIAL_HINTS.get(code))
    if status == 410:
        message = f"token invalid since {_ms_to_iso(timestamp)}" if timestamp is not None else None
        return SendResult(Outcome.DEVICE_TERMINAL, error_code=code, error_message=message)
    if status == 413:
        return SendResult(Outcome.PAYLOAD, error_code=code)
    if status == 429:
        if reason == "TooManyProviderTokenUpdates":
            return SendResult(
                Outcome.CREDENTIAL,
                error_code=code,
                error_message="the provider JWT changed too often on one connection (keep it 20-60 min)",
            )
        # Too many pushes to this one device: only that token waits.
        return SendResult(Outcome.DEVICE_TRANSIENT, error_code=code, retry_after=retry_after)
    if status >= 500:
        return SendResult(Outcome.PROVIDER_TRANSIENT, error_code=code, retry_after=retry_after)
    # 404 BadPath, 405 MethodNotAllowed and anything else: a bug in the request, never retried.
    return SendResult(Outcome.PAYLOAD, error_code=code)


_CREDENTIAL_HINTS = {
    "InvalidProviderToken": "APNs rejected the provider JWT: check key_id, team_id and the .p8 key",
    "ExpiredProviderToken": "the provider JWT was called expired even after re-minting (clock skew?)",
    "MissingProviderToken": "no provider JWT and no client certificate",
    "BadCertificate": "APNs rejected the client certificate",
    "BadCertificateEnvironment": "the client certificate is for the other APNs environment",
    "Forbidden": "APNs refused the request for these credentials",
    "UnrelatedKeyIdInToken": "the JWT's key id differs from the one used earlier on this connection",
    "BadEnvironmentKeyIdInToken": "the .p8 key is restricted to the other APNs environment",
    "BadEnvironmentKeyInToken": "the .p8 key is restricted to the other APNs environment",
}


def _ms_to_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- token auth


class JwtSigner:
    """Mints and caches the provider JWT for one (key, team).

    One JWT is reused by every request on every connection until it is ``refresh_after`` old
    (never per request: APNs answers 429 TooManyProviderTokenUpdates to churn). ``clock`` is
    injectable so tests can move time.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        team_id: str,
        *,
        refresh_after: float = JWT_REFRESH_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not JWT_MIN_AGE <= refresh_after <= JWT_MAX_AGE:
            raise ValueError("refresh_after must be between 20 and 60 minutes")
        self._key = key
        self.key_id = key_id
        self.team_id = team_id
        self.refresh_after = refresh_after
        self.clock = clock
        self._token: str | None = None
        self._issued_at = 0.0
        #: How many JWTs this signer minted (tests and metrics).
        self.minted = 0

    def token(self) -> str:
        """The current JWT, minting one when there is none or it reached ``refresh_after``."""
        now = self.clock()
        if self._token is None or now - self._issued_at >= self.refresh_after or now < self._issued_at:
            self._mint(now)
        assert self._token is not None
        return self._token

    def expired(self, stale: str) -> str:
        """APNs called ``stale`` expired: mint a new JWT unless another request already did.

        Comparing with ``stale`` makes a burst of concurrent ExpiredProviderToken answers cost
        one re-mint, not one per request (which would itself look like churn to APNs).
        """
        if self._token == stale:
            self._mint(self.clock())
        return self.token()

    def _mint(self, now: float) -> None:
        issued = int(now)
        self._token = jwt.encode(
            {"iss": self.team_id, "iat": issued},
            self._key,
            algorithm="ES256",
            headers={"kid": self.key_id},
        )
        self._issued_at = float(issued)
        self.minted += 1


# --------------------------------------------------------------------------- provider


class ApnsProvider(Provider):
    """Sends to APNs for one app (one team key or one client certificate)."""

    name: ClassVar[str] = "apns"
    message_ids = True

    def __init__(
        self,
        *,
        transport: Transport,
        bundle_id: str,
        signer: JwtSigner | None = None,
        identity: ClientIdentity | None = None,
        environment: str = "production",
        base_url: str = PRODUCTION_URL,
        sandbox_base_url: str = SANDBOX_URL,
        concurrency: int = 500,
        timeout: float | None = None,
        owns_transport: bool = False,
        trusted_hosts: frozenset[str] | None = None,
    ) -> None:
        """``trusted_hosts``: answers from other hosts lose their text (None: trust any)."""
        self._transport = transport
        self._owns_transport = owns_transport
        self.bundle_id = bundle_id
        self.signer = signer
        self.identity = identity
        self.environment = environment
        self._urls = {"production": base_url.rstrip("/"), "sandbox": sandbox_base_url.rstrip("/")}
        #: Base URLs that are not Apple's (nor the lab's): their answers' text is not repeated.
        self._foreign = {url for url in self._urls.values() if is_foreign(url, trusted_hosts)}
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        #: Per APNs host: set once a request there was authenticated (see the module docstring).
        self._open: dict[str, asyncio.Event] = {}
        self._first: dict[str, asyncio.Lock] = {}

    @property
    def certificate_expires_at(self) -> float | None:
        """UNIX time the client certificate expires (certificate auth), for the expiry gauge."""
        return self.identity.not_after if self.identity is not None else None

    # ------------------------------------------------------------------ setup

    @classmethod
    async def create(cls, settings: ApnsSettings | Mapping[str, Any], transport: Transport) -> ApnsProvider:
        """Check the section (naming the bad key) and build the provider; no network I/O.

        The shared process transport cannot carry APNs' needs (HTTP/2 prior knowledge, a
        per-credential client certificate, an extra CA for the lab, one team per connection),
        so a production transport is replaced by a dedicated one this provider owns. Any other
        transport (a test fake) is used as given.
        """
        s = cfg.section(ApnsSettings, "apns", settings)
        auth = await load_auth(s)
        signer = JwtSigner(*auth.token_key) if auth.token_key is not None else None
        ca_pem = await load_ca(s)
        owns = isinstance(transport, PyreqwestTransport)
        if isinstance(transport, PyreqwestTransport):
            transport = PyreqwestTransport(
                timeout=s.timeout if s.timeout is not None else 10.0,
                http2_prior_knowledge=True,
                ca_pem=ca_pem,
                identity_pem=auth.identity.pem if auth.identity is not None else None,
                outbound=transport.outbound,
            )
        return cls(
            transport=transport,
            bundle_id=auth.bundle_id,
            signer=signer,
            identity=auth.identity,
            environment=s.environment,
            base_url=checked_url("apns.base_url", s.base_url or PRODUCTION_URL),
            sandbox_base_url=checked_url("apns.sandbox_base_url", s.sandbox_base_url or SANDBOX_URL),
            concurrency=s.concurrency,
            timeout=s.timeout,
            owns_transport=owns,
            trusted_hosts=s.trusted_hosts(HOSTS),
        )

    # ------------------------------------------------------------------ send

    async def send_batch(self, rendered: Any, targets: Sequence[Target]) -> list[SendResult]:
        """Send ``rendered`` (an :class:`ApnsRendered`) to every target concurrently."""
        if not targets:
            return []
        rendered, publish_id = message_ids.unwrap(rendered)
        if not isinstance(rendered, ApnsRendered):
            raise TypeError("rendered APNs notification must be an ApnsRendered")
        headers = dict(rendered.headers)
        headers["apns-topic"] = topic_for(self.bundle_id, rendered)
        # The message ids: a custom key next to ``aps``, the delivery id spliced per target.
        payload = (
            message_ids.whole(rendered.payload)
            if publish_id is None
            else message_ids.prepend(rendered.payload, message_ids.object_value(publish_id))
        )
        sends = (
            answers.one(self.name, self._send_one(headers, payload.body(t.recipient_id), t)) for t in targets
        )
        return list(await asyncio.gather(*sends))

    async def _send_one(self, headers: dict[str, str], payload: bytes, target: Target) -> SendResult:
        env = target.environment if target.environment in ("production", "sandbox") else self.environment
        base = self._urls[env]
        url = f"{base}/3/device/{target.token}"
        if base not in self._open:
            self._open[base] = asyncio.Event()
            self._first[base] = asyncio.Lock()
        async with self._semaphore:
            if not self._open[base].is_set():
                async with self._first[base]:
                    if not self._open[base].is_set():
                        # Ours is the only stream on this host until one was authenticated.
                        return await self._attempt(url, headers, payload, target, base)
            return await self._attempt(url, headers, payload, target, base)

    async def _attempt(
        self, url: str, headers: dict[str, str], payload: bytes, target: Target, base: str
    ) -> SendResult:
        apns_id = str(uuid.uuid4())
        jwt_token = self.signer.token() if self.signer is not None else None
        try:
            resp = await self._post(url, headers, payload, apns_id, jwt_token)
            if (
                resp.status == 403
                and self.signer is not None
                and jwt_token is not None
                and _reason(resp.body)[0] == "ExpiredProviderToken"
            ):
                jwt_token = self.signer.expired(jwt_token)
                log.info("apns[%s]: provider JWT expired; re-minted once and retrying", self.bundle_id)
                resp = await self._post(url, headers, payload, apns_id, jwt_token)
        except TransportError as exc:
            # Maybe a new connection next time: APNs will allow one stream on it again.
            self._open[base] = asyncio.Event()
            return transport_failure(exc)
        if resp.status != 403 and resp.status != 429:
            self._open[base].set()
        result = classify_apns_response(resp, apns_id)
        if base in self._foreign:
            result = foreign_answer(result, resp.status)
        if result.outcome is Outcome.CREDENTIAL:
            log.warning(
                "apns[%s]: credential error %s for token %s",
                self.bundle_id,
                result.error_code,
                mask_token(target.token),
            )
        return result

    async def _post(
        self, url: str, headers: dict[str, str], payload: bytes, apns_id: str, jwt_token: str | None
    ) -> HttpResponse:
        h = dict(headers)
        h["apns-id"] = apns_id
        if jwt_token is not None:
            h["authorization"] = f"bearer {jwt_token}"
        return await self._transport.request(HttpRequest("POST", url, h, payload, self._timeout))

    async def aclose(self) -> None:
        """Close the dedicated connections (a credential rotation builds a new provider)."""
        if self._owns_transport:
            await self._transport.aclose()


SPEC = ProviderSpec(
    name="apns",
    settings=ApnsSettings,
    provider=ApnsProvider,
    renderer=render_apns.RENDERER,
    platforms=frozenset({"ios", "macos"}),
    describe=describe,
    token_rule=lambda token, _lab: render_apns.normalize_token(token),
    environments=True,
    hosts=HOSTS,
    urls=lambda s: [("base_url", s.base_url), ("sandbox_base_url", s.sandbox_base_url)],
)
