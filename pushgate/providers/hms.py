"""Huawei Push Kit, server API v1 (docs/providers.md#hms).

One ``messages:send`` request carries up to 1,000 tokens, so a batch becomes a few requests
sent concurrently. Push Kit answers with a ``code`` in the body whatever the HTTP status, and a
partial success lists the rejected tokens inside ``msg`` (a JSON *string*): the decision is made
on that code, never on the status alone. Authentication is an OAuth client-credentials token,
cached (Huawei throttles token requests) and replaced once when a send reports it expired.

Topics and conditions travel as targets whose token is ``topic:<name>`` or
``condition:<expression>``; each is one request.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

import pushgate.providers.settings as cfg
from pushgate.domain import message_ids, render_hms
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.registry import mask_token
from pushgate.providers import answers
from pushgate.providers.base import (
    Concurrency,
    CredentialInfo,
    HttpUrl,
    Provider,
    ProviderSettings,
    ProviderSpec,
    Target,
)
from pushgate.providers.http import parse_retry_after
from pushgate.providers.oauth import ClientCredentials, OAuthError
from pushgate.providers.outbound import checked_url, foreign_answer, is_foreign, transport_failure
from pushgate.providers.transport import HttpRequest, HttpResponse, Transport, TransportError

__all__ = ["MAX_TOKENS_PER_REQUEST", "HmsProvider", "classify_hms_response"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://push-api.cloud.huawei.com"
DEFAULT_TOKEN_URL = "https://oauth-login.cloud.huawei.com/oauth2/v3/token"
#: Huawei's own hosts: the only ones an uploaded credential may name (``ProviderSpec.hosts``).
HOSTS = frozenset({"push-api.cloud.huawei.com", "oauth-login.cloud.huawei.com"})
MAX_TOKENS_PER_REQUEST = 1000
TOPIC_PREFIX = "topic:"
CONDITION_PREFIX = "condition:"

SUCCESS = "80000000"
PARTIAL = "80100000"
ALL_TOKENS_INVALID = "80300007"
AUTH_ERRORS = frozenset({"80200001", "80200003"})
#: Push Kit is not enabled for the app, or not in this region: fix the console configuration.
CONFIG_ERRORS = frozenset({"80300002"})
#: Internal error, OAuth service hiccup, too many concurrent topic messages: back off.
RETRY_CODES = frozenset({"81000001", "80600003", "80100017"})
#: Of those, the rate limits (class ``quota``); the rest are provider trouble.
QUOTA_CODES = frozenset({"80100017"})
NO_HIGH_PRIORITY = "80300011"

_json_encode = msgspec.json.Encoder().encode
_json_decode = answers.decode_json


def _all(result: SendResult, n: int) -> list[SendResult]:
    """The same answer for every token of a request, as separate objects (callers may mutate)."""
    return [dataclasses.replace(result) for _ in range(n)]


def _parse(body: bytes) -> tuple[str | None, Any, str | None]:
    """``(code, msg, requestId)`` from a Push Kit answer; ``code`` is None for non-Push-Kit bodies."""
    try:
        doc = _json_decode(body)
    except msgspec.DecodeError:
        return None, body[:200].decode("utf-8", "replace").strip() or None, None
    if not isinstance(doc, dict):
        return None, None, None
    code = doc.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    request_id = doc.get("requestId")
    return (
        code if isinstance(code, str) and code else None,
        doc.get("msg"),
        request_id if isinstance(request_id, str) else None,
    )


def _illegal_tokens(msg: Any) -> set[str] | None:
    """The ``illegal_tokens`` of a partial success; ``msg`` is a JSON string (or, leniently, an object)."""
    if isinstance(msg, str):
        try:
            msg = _json_decode(msg)
        except msgspec.DecodeError:
            return None
    if not isinstance(msg, dict):
        return None
    tokens = msg.get("illegal_tokens")
    if not isinstance(tokens, list):
        return set()
    return {t for t in tokens if isinstance(t, str)}


def classify_hms_response(resp: HttpResponse, tokens: Sequence[str]) -> list[SendResult]:
    """One result per token of the request, from Push Kit's ``code`` (docs/providers.md#hms table).

    An auth code (80200001/80200003) comes back as CREDENTIAL; :class:`HmsProvider` intercepts it
    first to replace the access token and retry once.
    """
    code, msg, request_id = _parse(resp.body)
    text = msg if isinstance(msg, str) else None
    n = len(tokens)
    retry_after = parse_retry_after(resp.headers.get("retry-after"))

    if code is None:
        err = f"http_{resp.status}"
        if resp.status >= 500 or resp.status == 429:
            kind = Outcome.QUOTA if resp.status == 429 else Outcome.PROVIDER_TRANSIENT
            retry = SendResult(kind, error_code=err, error_message=text, retry_after=retry_after)
            return _all(retry, n)
        if resp.status in (401, 403):
            return _all(SendResult(Outcome.CREDENTIAL, error_code=err, error_message=text), n)
        if resp.status == 413:
            return _all(SendResult(Outcome.PAYLOAD, error_code=err, error_message=text), n)
        if 200 <= resp.status < 300:
            # A 2xx without a code is not an answer Push Kit gives; do not assume delivery.
            no_code = SendResult(Outcome.PROVIDER_TRANSIENT, error_code=err, error_message="no code")
            return _all(no_code, n)
        return _all(SendResult(Outcome.PAYLOAD, error_code=err, error_message=text), n)

    if code == SUCCESS:
        return _all(SendResult(Outcome.SENT, provider_message_id=request_id), n)
    if code == PARTIAL:
        illegal = _illegal_tokens(msg)
        if illegal is None:
            log.warning("hms: partial success without a readable illegal_tokens list; treating all as sent")
            illegal = set()
        return [
            SendResult(Outcome.DEVICE_TERMINAL, error_code=code, error_message="illegal token")
            if t in illegal
            else SendResult(Outcome.SENT, provider_message_id=request_id)
            for t in tokens
        ]
    if code == ALL_TOKENS_INVALID:
        return _all(SendResult(Outcome.DEVICE_TERMINAL, error_code=code, error_message=text), n)
    if code in AUTH_ERRORS or code in CONFIG_ERRORS:
        return _all(SendResult(Outcome.CREDENTIAL, error_code=code, error_message=text), n)
    if code in RETRY_CODES or resp.status >= 500:
        # 80100017: too many concurrent topic messages, a rate limit rather than an outage.
        kind = Outcome.QUOTA if code in QUOTA_CODES or resp.status == 429 else Outcome.PROVIDER_TRANSIENT
        retry = SendResult(kind, error_code=code, error_message=text, retry_after=retry_after)
        return _all(retry, n)
    # 80300008 (too large), 80100001/3 (bad message), 80100004 (TTL), 80100013 (collapse_key), …
    return _all(SendResult(Outcome.PAYLOAD, error_code=code, error_message=text), n)


class HmsSettings(ProviderSettings, forbid_unknown_fields=True, omit_defaults=True):
    """Huawei Push Kit: OAuth client credentials."""

    app_id: str | None = None
    client_secret: str | None = None
    base_url: HttpUrl | None = None
    token_url: HttpUrl | None = None
    #: Launcher activity (``com.example.MainActivity``) that Push Kit badges need; no badge without it.
    badge_class: str | None = None
    concurrency: Concurrency = 50


def describe(s: HmsSettings) -> CredentialInfo:
    return CredentialInfo(f"app {s.app_id or '?'}")


class HmsProvider(Provider):
    """Sends to Push Kit for one app (app id + secret)."""

    name: ClassVar[str] = "hms"
    message_ids = True

    def __init__(
        self,
        *,
        transport: Transport,
        app_id: str,
        client_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        badge_class: str | None = None,
        concurrency: int = 50,
        timeout: float | None = None,
        trusted_hosts: frozenset[str] | None = None,
    ) -> None:
        """``trusted_hosts``: answers from other hosts lose their text (None: trust any)."""
        self._transport = transport
        self.app_id = app_id
        self._send_url = f"{base_url.rstrip('/')}/v1/{app_id}/messages:send"
        self._foreign = is_foreign(base_url, trusted_hosts)
        self._badge_class = badge_class
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self.oauth = ClientCredentials(
            transport,
            token_url,
            {"grant_type": "client_credentials", "client_id": app_id, "client_secret": client_secret},
            name=f"hms[{app_id}]",
            refresh_margin=300.0,  # Huawei's demo refreshes five minutes early
            timeout=timeout,
            foreign=is_foreign(token_url, trusted_hosts),
        )

    @classmethod
    async def create(cls, settings: HmsSettings | Mapping[str, Any], transport: Transport) -> HmsProvider:
        """Check ``[hms]``; no network I/O (the first send fetches the token)."""
        s = cfg.section(HmsSettings, "hms", settings)
        return cls(
            transport=transport,
            app_id=cfg.required(s.app_id, "hms", "app_id"),
            client_secret=cfg.required(s.client_secret, "hms", "client_secret"),
            base_url=checked_url("hms.base_url", s.base_url or DEFAULT_BASE_URL),
            token_url=checked_url("hms.token_url", s.token_url or DEFAULT_TOKEN_URL),
            badge_class=cfg.optional(s.badge_class),
            concurrency=s.concurrency,
            timeout=s.timeout,
            trusted_hosts=s.trusted_hosts(HOSTS),
        )

    def _prepare(self, rendered: Mapping[str, Any]) -> dict[str, Any]:
        """Add what rendering cannot know: the badge's launcher class from the config.

        Push Kit rejects a badge without ``class``, so without ``hms.badge_class`` the badge is
        dropped rather than failing the whole message.
        """
        message = dict(rendered)
        note = (message.get("android") or {}).get("notification")
        if isinstance(note, dict) and isinstance(note.get("badge"), dict) and "class" not in note["badge"]:
            message = copy.deepcopy(message)
            note = message["android"]["notification"]
            if self._badge_class:
                note["badge"]["class"] = self._badge_class
            else:
                del note["badge"]
        return message

    async def send_batch(self, rendered: Any, targets: Sequence[Target]) -> list[SendResult]:
        """Send the rendered ``message`` to every target: ≤1,000 tokens per request, topics and
        conditions one request each; results come back in target order."""
        if not targets:
            return []
        try:
            access_token = await self.oauth.get()
        except OAuthError as exc:
            log.warning("hms[%s]: OAuth token exchange failed: %s", self.app_id, exc)
            return [exc.result() for _ in targets]

        rendered, publish_id = message_ids.unwrap(rendered)
        message = self._prepare(rendered)
        if publish_id is not None:
            # One request carries many tokens: only the publish id fits (docs/receipts.md).
            data = message.get("data")
            message["data"] = message_ids.with_publish_id(data if isinstance(data, str) else "{}", publish_id)
        results: list[SendResult | None] = [None] * len(targets)
        groups: list[tuple[list[int], str, Any]] = []
        token_idx: list[int] = []
        for i, t in enumerate(targets):
            if t.token.startswith(TOPIC_PREFIX):
                groups.append(([i], "topic", t.token[len(TOPIC_PREFIX) :]))
            elif t.token.startswith(CONDITION_PREFIX):
                groups.append(([i], "condition", t.token[len(CONDITION_PREFIX) :]))
            else:
                token_idx.append(i)
        for k in range(0, len(token_idx), MAX_TOKENS_PER_REQUEST):
            chunk = token_idx[k : k + MAX_TOKENS_PER_REQUEST]
            groups.append((chunk, "token", [targets[i].token for i in chunk]))

        async def run(indexes: list[int], field: str, value: Any) -> None:
            tokens = [targets[i].token for i in indexes]
            send = self._send_group({**message, field: value}, tokens, access_token)
            out = await answers.group(self.name, send, len(tokens))
            for i, res in zip(indexes, out, strict=True):
                results[i] = res

        await asyncio.gather(*(run(*g) for g in groups))
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    async def _send_group(
        self, message: dict[str, Any], tokens: list[str], access_token: str
    ) -> list[SendResult]:
        async with self._semaphore:
            try:
                resp = await self._post(message, access_token)
                code = _parse(resp.body)[0]
                if code in AUTH_ERRORS or (code is None and resp.status == 401):
                    # Expired or revoked access token: replace it once and retry once.
                    try:
                        access_token = await self.oauth.get(stale=access_token)
                    except OAuthError as exc:
                        return _all(exc.result(), len(tokens))
                    resp = await self._post(message, access_token)
                elif code == NO_HIGH_PRIORITY and (message.get("android") or {}).get("urgency") == "HIGH":
                    # The app lacks the high-priority permission: Huawei's advice is to send as NORMAL.
                    log.warning("hms[%s]: no permission for HIGH urgency, resending as NORMAL", self.app_id)
                    message = {**message, "android": {**message["android"], "urgency": "NORMAL"}}
                    resp = await self._post(message, access_token)
            except TransportError as exc:
                return _all(transport_failure(exc), len(tokens))
        results = classify_hms_response(resp, tokens)
        if self._foreign:
            results = [foreign_answer(r, resp.status) for r in results]
        first = results[0] if results else None
        if first is not None and first.outcome is Outcome.CREDENTIAL:
            log.warning(
                "hms[%s]: credential error %s for %d target(s) (first %s): %s",
                self.app_id,
                first.error_code,
                len(tokens),
                mask_token(tokens[0]),
                first.error_message,
            )
        return results

    async def _post(self, message: dict[str, Any], access_token: str) -> HttpResponse:
        body = _json_encode({"validate_only": False, "message": message})
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
    name="hms",
    settings=HmsSettings,
    provider=HmsProvider,
    renderer=render_hms.RENDERER,
    platforms=frozenset({"android", "other"}),
    describe=describe,
    native={"hms_topic": "topic", "hms_condition": "condition"},
    token_rule=lambda token, _lab: render_hms.normalize_token(token),
    hosts=HOSTS,
    urls=lambda s: [("base_url", s.base_url), ("token_url", s.token_url)],
)
