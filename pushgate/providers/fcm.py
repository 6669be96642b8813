"""Firebase Cloud Messaging, HTTP v1 API (docs/providers.md#fcm).

One ``messages:send`` request per token (the batch API is gone), sent concurrently over the
shared transport, authenticated with an OAuth2 access token obtained by the JWT-bearer grant
from the service account (``providers/oauth.py`` caches it; one exchange in flight).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import pushgate.providers.settings as cfg
from pushgate.domain import message_ids, render_fcm
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.registry import mask_token
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
from pushgate.providers.outbound import checked_url, foreign_answer, is_foreign, transport_failure
from pushgate.providers.transport import HttpRequest, HttpResponse, Transport, TransportError

__all__ = ["FcmProvider", "classify_fcm_response"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://fcm.googleapis.com"
#: Google's own hosts: the only ones an uploaded credential may name (``ProviderSpec.hosts``).
HOSTS = frozenset({"fcm.googleapis.com", "oauth2.googleapis.com"})
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Refresh this long before the access token expires (google-auth uses 225 s).
REFRESH_MARGIN = 240.0
#: FCM asks for at least one minute before retrying a 429.
MIN_QUOTA_BACKOFF = 60.0
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

_json_encode = msgspec.json.Encoder().encode
_json_decode = answers.decode_json


def _read_text(path: str) -> str:
    with open(os.path.expanduser(path), encoding="utf-8") as fh:
        return fh.read()


class _ParsedError(msgspec.Struct):
    code: str | None
    message: str | None
    status: str | None
    token_field: bool


def _parse_error(body: bytes) -> _ParsedError:
    """Pull the FcmError code, google status and message out of a ``google.rpc.Status`` body."""
    try:
        doc = _json_decode(body)
    except msgspec.DecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return _ParsedError(None, text or None, None, False)
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return _ParsedError(None, None, None, False)
    code: str | None = None
    token_field = False
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        kind = detail.get("@type")
        if kind == _FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            code = code or detail["errorCode"]
        elif kind == _BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or ():
                if isinstance(violation, dict) and str(violation.get("field", "")).endswith("token"):
                    token_field = True
    message = err.get("message") if isinstance(err.get("message"), str) else None
    status = err.get("status") if isinstance(err.get("status"), str) else None
    return _ParsedError(code, message, status, token_field)


def _is_about_token(parsed: _ParsedError) -> bool:
    if parsed.token_field:
        return True
    msg = (parsed.message or "").lower()
    return "registration token" in msg or "message.token" in msg


def classify_fcm_response(resp: HttpResponse) -> SendResult:
    """Map one ``messages:send`` answer onto an :class:`Outcome` (docs/providers.md#fcm table).

    A bare 401 (no FcmError: our access token was rejected) is returned as CREDENTIAL with
    ``error_code`` ``UNAUTHENTICATED``/``http_401``; :class:`FcmProvider` intercepts it first to
    refresh the token and retry once.
    """
    status = resp.status
    if status == 200:
        try:
            name = _json_decode(resp.body).get("name")
        except (msgspec.DecodeError, AttributeError):
            name = None
        return SendResult(Outcome.SENT, provider_message_id=name if isinstance(name, str) else None)

    parsed = _parse_error(resp.body)
    code = parsed.code or parsed.status or f"http_{status}"
    message = parsed.message
    retry_after = parse_retry_after(resp.headers.get("retry-after"))

    if status == 400:
        if (parsed.code in (None, "INVALID_ARGUMENT")) and _is_about_token(parsed):
            return SendResult(Outcome.DEVICE_TERMINAL, error_code=code, error_message=message)
        return SendResult(Outcome.PAYLOAD, error_code=code, error_message=message)
    if status == 401:
        return SendResult(Outcome.CREDENTIAL, error_code=code, error_message=message)
    if status == 403:
        if parsed.code == "SENDER_ID_MISMATCH":
            return SendResult(Outcome.DEVICE_TERMINAL, error_code=code, error_message=message)
        return SendResult(Outcome.CREDENTIAL, error_code=code, error_message=message)
    if status == 404 and parsed.code == "UNREGISTERED":
        return SendResult(Outcome.DEVICE_TERMINAL, error_code=code, error_message=message)
    if status == 429:
        wait = max(retry_after or 0.0, MIN_QUOTA_BACKOFF)
        return SendResult(Outcome.QUOTA, error_code=code, error_message=message, retry_after=wait)
    if status >= 500:
        if parsed.code == "UNSPECIFIED_ERROR":
            log.warning("fcm: UNSPECIFIED_ERROR (%s): %s", status, message)
        return SendResult(
            Outcome.PROVIDER_TRANSIENT, error_code=code, error_message=message, retry_after=retry_after
        )
    if status >= 400:
        return SendResult(Outcome.PAYLOAD, error_code=code, error_message=message)
    # 1xx/2xx other than 200/3xx: not something FCM sends; retry rather than guess.
    return SendResult(
        Outcome.PROVIDER_TRANSIENT, error_code=code, error_message=message, retry_after=retry_after
    )


#: Targets that are not device tokens: FCM topics and conditions (recipients ``fcm_topic``/``fcm_condition``).
NATIVE_PREFIXES: tuple[tuple[str, bytes], ...] = (("topic:", b'"topic":'), ("condition:", b'"condition":'))


class FcmSettings(ProviderSettings, forbid_unknown_fields=True, omit_defaults=True):
    """FCM HTTP v1 credentials (checked at startup by :meth:`FcmProvider.create`)."""

    #: Path of the service-account JSON (give this or ``service_account_json``).
    service_account_file: str | None = None
    #: The service-account JSON itself, e.g. ``"${FCM_SERVICE_ACCOUNT}"``, or as a TOML table.
    service_account_json: str | dict[str, Any] | None = None
    #: Default: the JSON's ``base_url`` key (the lab writes one), else https://fcm.googleapis.com.
    base_url: HttpUrl | None = None
    #: Default: the JSON's ``project_id``.
    project_id: str | None = None
    concurrency: Concurrency = 200


async def _account_source(s: FcmSettings) -> tuple[str, str]:
    """``(the key it came from, the service-account JSON text)``."""
    if s.service_account_file:
        key, path = "fcm.service_account_file", s.service_account_file
        try:
            return key, await asyncio.to_thread(_read_text, path)
        except FileNotFoundError:
            raise ProviderConfigError(f"{key}: file not found: {path}") from None
        except OSError as exc:
            raise ProviderConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    inline = s.service_account_json
    if inline:
        return "fcm.service_account_json", inline if isinstance(inline, str) else json.dumps(inline)
    raise ProviderConfigError(
        "fcm.service_account_file: required (or fcm.service_account_json with the key inline)"
    )


@dataclass(frozen=True, slots=True)
class _ServiceAccount:
    info: dict[str, Any]
    client_email: str
    token_uri: str
    private_key: rsa.RSAPrivateKey
    private_key_id: str | None

    @classmethod
    def parse(cls, key: str, raw: str) -> _ServiceAccount:
        """The fields of a service-account key file; errors name ``key`` and the field."""
        try:
            info = json.loads(raw)
        except ValueError as exc:
            raise ProviderConfigError(f"{key}: not valid JSON ({exc})") from None
        if not isinstance(info, dict):
            raise ProviderConfigError(f"{key}: must be a JSON object (a service-account key file)")

        def field(name: str) -> str:
            value = info.get(name)
            if not isinstance(value, str) or not value:
                raise ProviderConfigError(f"{key}: missing or empty field {name!r}")
            return value

        client_email = field("client_email")
        token_uri = field("token_uri")
        try:
            private_key = load_pem_private_key(field("private_key").encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ProviderConfigError(
                f"{key}: field 'private_key' is not a PEM private key ({exc})"
            ) from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ProviderConfigError(f"{key}: field 'private_key' must be an RSA key")
        checked_url(f"{key}: field 'token_uri'", token_uri)
        pkid = info.get("private_key_id")
        return cls(
            info, client_email, token_uri, private_key, pkid if isinstance(pkid, str) and pkid else None
        )


def describe(s: FcmSettings) -> CredentialInfo:
    """The service account's e-mail and key id (read from the file for config credentials)."""
    inline = s.service_account_json
    raw = json.dumps(inline) if isinstance(inline, dict) else inline
    try:
        if not raw and s.service_account_file:
            raw = _read_text(s.service_account_file)
        info = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    return CredentialInfo(f"{info.get('client_email', '?')} key {str(info.get('private_key_id', ''))[:8]}")


def upload(body: dict[str, Any]) -> dict[str, Any]:
    """The API takes the service account as a JSON object (``service_account``)."""
    if "service_account" in body:
        account = body.pop("service_account")
        if not isinstance(account, dict):
            raise ValueError("service_account: must be the service-account JSON object")
        body["service_account_json"] = json.dumps(account)
    return body


def urls(s: FcmSettings) -> list[tuple[str, str | None]]:
    """The URLs the settings name: ``base_url``, and the service account's ``token_uri`` and
    ``base_url`` (an unreadable account names none; building the provider says why)."""
    inline = s.service_account_json
    try:
        info = json.loads(inline) if isinstance(inline, str) else inline or {}
    except ValueError:
        info = {}
    found: list[tuple[str, str | None]] = [("base_url", s.base_url)]
    if isinstance(info, dict):
        for key in ("token_uri", "base_url"):
            value = info.get(key)
            found.append((f"service_account.{key}", value if isinstance(value, str) else None))
    return found


class FcmProvider(Provider):
    """Sends to FCM v1 for one Firebase project (one service account)."""

    name: ClassVar[str] = "fcm"
    message_ids = True

    def __init__(
        self,
        *,
        transport: Transport,
        project_id: str,
        client_email: str,
        private_key: rsa.RSAPrivateKey,
        private_key_id: str | None,
        token_uri: str,
        base_url: str = DEFAULT_BASE_URL,
        concurrency: int = 200,
        timeout: float | None = None,
        trusted_hosts: frozenset[str] | None = None,
    ) -> None:
        """``trusted_hosts``: answers from other hosts lose their text (None: trust any)."""
        self._transport = transport
        self.project_id = project_id
        self._client_email = client_email
        self._private_key = private_key
        self._private_key_id = private_key_id
        self._token_uri = token_uri
        self._send_url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._foreign = is_foreign(base_url, trusted_hosts)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self.oauth = ClientCredentials(
            transport,
            token_uri,
            self._grant,
            name="fcm",
            refresh_margin=REFRESH_MARGIN,
            timeout=timeout,
            foreign=is_foreign(token_uri, trusted_hosts),
        )

    # ------------------------------------------------------------------ setup

    @classmethod
    async def create(cls, settings: FcmSettings | Mapping[str, Any], transport: Transport) -> FcmProvider:
        """Check the service account and build the provider; no network I/O happens here."""
        s = cfg.section(FcmSettings, "fcm", settings)
        key, raw = await _account_source(s)
        account = _ServiceAccount.parse(key, raw)
        project_id = s.project_id or account.info.get("project_id")
        if not isinstance(project_id, str) or not project_id:
            raise ProviderConfigError(f"fcm.project_id: required (not in settings nor in {key})")
        base_url = s.base_url or account.info.get("base_url") or DEFAULT_BASE_URL
        if not isinstance(base_url, str):
            raise ProviderConfigError(f"fcm.base_url: must be an http(s) URL, got {base_url!r}")
        checked_url("fcm.base_url", base_url)
        return cls(
            transport=transport,
            project_id=project_id,
            client_email=account.client_email,
            private_key=account.private_key,
            private_key_id=account.private_key_id,
            token_uri=account.token_uri,
            base_url=base_url,
            concurrency=s.concurrency,
            timeout=s.timeout,
            trusted_hosts=s.trusted_hosts(HOSTS),
        )

    # ------------------------------------------------------------------ OAuth

    def _assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self._client_email,
            "scope": SCOPE,
            "aud": self._token_uri,
            "iat": now,
            "exp": now + 3600,
        }
        headers = {"kid": self._private_key_id} if self._private_key_id else None
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers=headers)

    def _grant(self) -> dict[str, str]:
        """The JWT-bearer grant's form, with a freshly signed assertion."""
        return {"grant_type": GRANT_TYPE, "assertion": self._assertion()}

    # ------------------------------------------------------------------ send

    async def send_batch(self, rendered: Any, targets: Sequence[Target]) -> list[SendResult]:
        """Send the rendered ``message`` (see ``render_fcm``) to every target concurrently."""
        if not targets:
            return []
        try:
            access_token = await self.oauth.get()
        except OAuthError as exc:
            log.warning("fcm[%s]: OAuth token exchange failed: %s", self.project_id, exc)
            return [exc.result() for _ in targets]

        # Encode the shared part once; splice each message id and token in as bytes.
        head = message_ids.fcm_head(rendered)
        sends = (
            answers.one(self.name, self._send_one(head.body(t.recipient_id), t.token, access_token))
            for t in targets
        )
        return list(await asyncio.gather(*sends))

    async def _send_one(self, head: bytes, token: str, access_token: str) -> SendResult:
        # Native audiences arrive as "topic:<name>" / "condition:<expr>" (see NATIVE_PREFIXES).
        field, value = b'"token":', token
        for prefix, key in NATIVE_PREFIXES:
            if token.startswith(prefix):
                field, value = key, token[len(prefix) :]
                break
        body = head + field + _json_encode(value) + b"}}"
        async with self._semaphore:
            try:
                resp = await self._post(body, access_token)
                if resp.status == 401 and _parse_error(resp.body).code is None:
                    # Our access token was rejected (expired early, revoked): refresh once, retry once.
                    try:
                        access_token = await self.oauth.get(stale=access_token)
                    except OAuthError as exc:
                        return exc.result()
                    resp = await self._post(body, access_token)
            except TransportError as exc:
                return transport_failure(exc)
        result = classify_fcm_response(resp)
        if self._foreign:
            result = foreign_answer(result, resp.status)
        if result.outcome is Outcome.CREDENTIAL:
            log.warning(
                "fcm[%s]: credential error %s for token %s: %s",
                self.project_id,
                result.error_code,
                mask_token(token),
                result.error_message,
            )
        return result

    async def _post(self, body: bytes, access_token: str) -> HttpResponse:
        return await self._transport.request(
            HttpRequest(
                "POST",
                self._send_url,
                {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"},
                body,
                self._timeout,
            )
        )


SPEC = ProviderSpec(
    name="fcm",
    settings=FcmSettings,
    provider=FcmProvider,
    renderer=render_fcm.RENDERER,
    platforms=frozenset({"android", "ios", "web", "other"}),
    describe=describe,
    native={"fcm_topic": "topic", "fcm_condition": "condition"},
    upload=upload,
    quota_floor=60.0,
    hosts=HOSTS,
    urls=urls,
)
