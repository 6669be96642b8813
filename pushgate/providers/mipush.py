"""Xiaomi MiPush, server API v3 (docs/providers.md#mipush).

One form-encoded ``/v3/message/regid`` request carries up to 1,000 comma-joined regIds (the
cap is MiPush's documented-but-unconfirmed maximum), authenticated with
``Authorization: key=<app secret>``; there is no token exchange. The answer is always HTTP 200
with a numeric ``code``: 0 with ``data.bad_regids`` naming the devices to drop, or an error that
applies to the whole request. ``20301`` ("send failed", seen when no target is valid) is
ambiguous for several regIds, so such a request is re-sent one regId at a time and only a
single-regId 20301 marks a device invalid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

import msgspec

import pushgate.providers.settings as cfg
from pushgate.domain import message_ids, render_mipush
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.render_mipush import PACKAGE_PLACEHOLDER, MiPushRendered
from pushgate.providers import answers
from pushgate.providers.base import (
    Concurrency,
    CredentialInfo,
    HttpUrl,
    Provider,
    ProviderSettings,
    ProviderSpec,
    Target,
    digest,
)
from pushgate.providers.http import parse_retry_after
from pushgate.providers.outbound import checked_url, foreign_answer, is_foreign, transport_failure
from pushgate.providers.transport import HttpRequest, HttpResponse, Transport, TransportError

__all__ = ["MAX_REGIDS_PER_REQUEST", "REGION_HOSTS", "MiPushProvider", "classify_mipush_response"]

log = logging.getLogger(__name__)

REGION_HOSTS = {
    "china": "https://api.xmpush.xiaomi.com",
    "global": "https://sgp-api.xmpush.global.xiaomi.com",
    "europe": "https://fr-api.xmpush.global.xiaomi.com",
    "russia": "https://ru-api.xmpush.global.xiaomi.com",
    "india": "https://idmb-api.xmpush.global.xiaomi.com",
}
#: Xiaomi's own hosts: the only ones an uploaded credential may name (``ProviderSpec.hosts``).
HOSTS = frozenset(
    {"sandbox.xmpush.xiaomi.com", "api.xmpush.global.xiaomi.com"}
    | {url.removeprefix("https://") for url in REGION_HOSTS.values()}
)
MAX_REGIDS_PER_REQUEST = 1000
SEND_PATH = "/v3/message/regid"

#: Server busy/remote errors and "called too often": back off and retry.
RETRY_CODES = frozenset({1, 10001, 10002, 10003, 10027})
#: Bad AppSecret (21301/21302), or app / app id / key / package / blacklist problems: fix the config.
CREDENTIAL_CODES = frozenset({21301, 21302, 22000, 22006, 22007, 22022, 10031})
DAILY_QUOTA = 10034
#: ``API called too often``: a rate limit.
API_TOO_OFTEN = 10027
#: Wait after the daily quota is hit (MiPush resets it the next day; the engine's attempts run out
#: before that, so the delivery fails with the code rather than spinning).
QUOTA_WAIT = 3600.0
NO_VALID_TARGET = 20301

_json_decode = answers.decode_json


def _all(result: SendResult, n: int) -> list[SendResult]:
    return [dataclasses.replace(result) for _ in range(n)]


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        doc = _json_decode(body)
    except msgspec.DecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _code(doc: dict[str, Any] | None) -> int | None:
    raw = doc.get("code") if doc else None
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.lstrip("-").isdigit():
        return int(raw)
    return None


def classify_mipush_response(resp: HttpResponse, regids: Sequence[str]) -> list[SendResult]:
    """One result per regId of the request (docs/providers.md#mipush table)."""
    n = len(regids)
    doc = _parse(resp.body)
    code = _code(doc)
    if code is None:
        text = resp.body[:200].decode("utf-8", "replace").strip() or None
        err = f"http_{resp.status}"
        if resp.status >= 500 or resp.status == 429 or 200 <= resp.status < 300:
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
            kind = Outcome.QUOTA if resp.status == 429 else Outcome.PROVIDER_TRANSIENT
            return _all(SendResult(kind, error_code=err, error_message=text, retry_after=retry_after), n)
        if resp.status in (401, 403):
            return _all(SendResult(Outcome.CREDENTIAL, error_code=err, error_message=text), n)
        return _all(SendResult(Outcome.PAYLOAD, error_code=err, error_message=text), n)
    assert doc is not None
    reason = doc.get("reason") or doc.get("description")
    message = str(reason) if reason else None
    if code == 0:
        raw_data = doc.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        message_id = data.get("id") if isinstance(data.get("id"), str) else None
        raw_bad = data.get("bad_regids")
        bad = set(raw_bad.split(",")) if isinstance(raw_bad, str) and raw_bad else set()
        if isinstance(raw_bad, list):
            bad = {b for b in raw_bad if isinstance(b, str)}
        return [
            SendResult(
                Outcome.DEVICE_TERMINAL, error_code="bad_regid", error_message="listed in data.bad_regids"
            )
            if r in bad
            else SendResult(Outcome.SENT, provider_message_id=message_id)
            for r in regids
        ]
    err = str(code)
    if code in RETRY_CODES:
        # 10027: the API was called too often (a rate limit); the others are server trouble.
        kind = Outcome.QUOTA if code == API_TOO_OFTEN else Outcome.PROVIDER_TRANSIENT
        return _all(SendResult(kind, error_code=err, error_message=message), n)
    if code == DAILY_QUOTA:
        return _all(
            SendResult(Outcome.QUOTA, error_code=err, error_message=message, retry_after=QUOTA_WAIT), n
        )
    if code in CREDENTIAL_CODES:
        return _all(SendResult(Outcome.CREDENTIAL, error_code=err, error_message=message), n)
    if code == NO_VALID_TARGET and n == 1:
        return [SendResult(Outcome.DEVICE_TERMINAL, error_code=err, error_message=message)]
    # 65009 (content too long), 10008/10016/10017 (parameters), 20301 for several regIds, others.
    return _all(SendResult(Outcome.PAYLOAD, error_code=err, error_message=message), n)


class MiPushSettings(ProviderSettings, forbid_unknown_fields=True, omit_defaults=True):
    """Xiaomi MiPush: app secret + package name, region host."""

    app_secret: str | None = None
    package_name: str | None = None
    #: Which MiPush host serves the app (``base_url`` overrides it).
    region: Literal["china", "global", "europe", "russia", "india"] = "china"
    base_url: HttpUrl | None = None
    concurrency: Concurrency = 50


def describe(s: MiPushSettings) -> CredentialInfo:
    return CredentialInfo(f"package {s.package_name or '?'} {digest(s.app_secret or '')}")


class MiPushProvider(Provider):
    """Sends to MiPush for one app (app secret + package name, one region)."""

    name: ClassVar[str] = "mipush"
    message_ids = True

    def __init__(
        self,
        *,
        transport: Transport,
        app_secret: str,
        package_name: str,
        base_url: str,
        concurrency: int = 50,
        timeout: float | None = None,
        trusted_hosts: frozenset[str] | None = None,
    ) -> None:
        """``trusted_hosts``: answers from other hosts lose their text (None: trust any)."""
        self._transport = transport
        self.package_name = package_name
        self._auth = f"key={app_secret}"
        self._send_url = base_url.rstrip("/") + SEND_PATH
        self._foreign = is_foreign(base_url, trusted_hosts)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = timeout

    @classmethod
    async def create(
        cls, settings: MiPushSettings | Mapping[str, Any], transport: Transport
    ) -> MiPushProvider:
        """Check ``[mipush]``: ``base_url`` overrides the region's host."""
        s = cfg.section(MiPushSettings, "mipush", settings)
        return cls(
            transport=transport,
            app_secret=cfg.required(s.app_secret, "mipush", "app_secret"),
            package_name=cfg.required(s.package_name, "mipush", "package_name"),
            base_url=checked_url("mipush.base_url", s.base_url or REGION_HOSTS[s.region]),
            concurrency=s.concurrency,
            timeout=s.timeout,
            trusted_hosts=s.trusted_hosts(HOSTS),
        )

    def _fields(self, rendered: MiPushRendered) -> dict[str, str]:
        fields = {"restricted_package_name": self.package_name, **rendered.fields}
        sound = fields.get("extra.sound_uri")
        if sound and PACKAGE_PLACEHOLDER in sound:
            fields["extra.sound_uri"] = sound.replace(PACKAGE_PLACEHOLDER, self.package_name)
        return fields

    async def send_batch(self, rendered: Any, targets: Sequence[Target]) -> list[SendResult]:
        """Send to every target, ≤1,000 regIds per request, concurrently; results in order."""
        if not targets:
            return []
        rendered, publish_id = message_ids.unwrap(rendered)
        if not isinstance(rendered, MiPushRendered):
            raise TypeError("rendered MiPush message must be a MiPushRendered")
        fields = self._fields(rendered)
        if publish_id is not None and "payload" in fields:
            # One request carries many regIds: only the publish id fits (docs/receipts.md).
            fields["payload"] = message_ids.with_publish_id(fields["payload"], publish_id)
        regids = [t.token for t in targets]
        chunks = [
            regids[k : k + MAX_REGIDS_PER_REQUEST] for k in range(0, len(regids), MAX_REGIDS_PER_REQUEST)
        ]
        out = await asyncio.gather(
            *(answers.group(self.name, self._send_chunk(fields, c), len(c)) for c in chunks)
        )
        return [r for chunk in out for r in chunk]

    async def _send_chunk(self, fields: dict[str, str], regids: list[str]) -> list[SendResult]:
        async with self._semaphore:
            try:
                resp = await self._post(fields, regids)
            except TransportError as exc:
                return _all(transport_failure(exc), len(regids))
        if len(regids) > 1 and _code(_parse(resp.body)) == NO_VALID_TARGET:
            # Ambiguous for a batch: find out which regIds MiPush refuses, one at a time.
            singles = await asyncio.gather(*(self._send_chunk(fields, [r]) for r in regids))
            return [s[0] for s in singles]
        results = classify_mipush_response(resp, regids)
        if self._foreign:
            results = [foreign_answer(r, resp.status) for r in results]
        if results and results[0].outcome is Outcome.CREDENTIAL:
            log.warning(
                "mipush[%s]: credential error %s for %d regId(s): %s",
                self.package_name,
                results[0].error_code,
                len(regids),
                results[0].error_message,
            )
        return results

    async def _post(self, fields: dict[str, str], regids: list[str]) -> HttpResponse:
        body = urlencode({"registration_id": ",".join(regids), **fields}).encode("ascii")
        return await self._transport.request(
            HttpRequest(
                "POST",
                self._send_url,
                {
                    "Authorization": self._auth,
                    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
                },
                body,
                self._timeout,
            )
        )


SPEC = ProviderSpec(
    name="mipush",
    settings=MiPushSettings,
    provider=MiPushProvider,
    renderer=render_mipush.RENDERER,
    platforms=frozenset({"android", "ios"}),
    describe=describe,
    token_rule=lambda token, _lab: render_mipush.normalize_token(token),
    hosts=HOSTS,
    urls=lambda s: [("base_url", s.base_url)],
)
