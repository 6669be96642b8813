"""Windows Push Notification Services simulator (docs/providers.md#wns).

``POST /wns/channels`` mints a channel URI, as a Windows app gets one from
``PushNotificationChannelManager`` (``DELETE`` expires it: later notifications get 410). The
classic token endpoint (``/wns/accesstoken.srf``) and an Entra-style one check the Package SID
and secret and issue day-long tokens; the notify endpoint checks the bearer token, ``X-WNS-*``
headers against ``Content-Type``, the XML of toast/tile/badge bodies and the 5,000-byte limit,
and answers with WNS's statuses and headers.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from litestar import Request, Response, delete, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from pushgate.lab.faults import ErrorKind, hostile_response
from pushgate.lab.responses import empty_response, json_response, transport_of
from pushgate.lab.state import IssuedTokens, LabState

TOKEN_LIFETIME = 86400
MAX_BODY_BYTES = 5000
MAX_LABEL = 16
CLASSIC_SCOPE = "notify.windows.com"
ENTRA_SCOPE = "https://wns.windows.com/.default"
TYPES = {"wns/toast": "toast", "wns/tile": "tile", "wns/badge": "badge", "wns/raw": "raw"}
DIGITS = re.compile(r"\d{1,10}")


@dataclass(slots=True)
class WnsLab:
    """Channels minted (id → expired?) and access tokens issued (kept after expiry)."""

    channels: dict[str, bool] = field(default_factory=dict)
    tokens: IssuedTokens = field(default_factory=IssuedTokens)

    def issue(self) -> str:
        return self.tokens.issue("EgAa", TOKEN_LIFETIME, 48)


def wns_state(lab: LabState) -> WnsLab:
    state = lab.extras.get("wns")
    if not isinstance(state, WnsLab):
        state = lab.extras["wns"] = WnsLab()
    return state


def wns_error(status: int, description: str, headers: dict[str, str] | None = None) -> Response[bytes]:
    """WNS answers errors with an empty body and the reason in headers."""
    return empty_response(
        status,
        {
            "X-WNS-Error-Description": description,
            "X-WNS-Debug-Trace": secrets.token_hex(8),
            **(headers or {}),
        },
    )


def check_body(kind: str, body: bytes) -> str | None:
    """The XML problem of a toast/tile/badge body, or None when it is acceptable."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        return f"XML is not well-formed: {exc}"
    if root.tag != kind:
        return f"root element must be <{kind}> for wns/{kind}, got <{root.tag}>"
    if kind == "badge":
        value = root.get("value")
        if value is None or not (DIGITS.fullmatch(value) or value.isalpha()):
            return "badge needs a value attribute (a number or a glyph name)"
    elif root.find("visual/binding") is None:
        return f"{kind} needs <visual><binding>"
    return None


def fault_response(error: ErrorKind, retry_after: int | None) -> Response[bytes]:
    """WNS's real answer for each injectable fault."""
    if error == "unregistered":
        return wns_error(410, "The channel expired")
    if error == "invalid":
        return wns_error(404, "The channel URI is not valid")
    if error in ("quota", "429"):
        headers = {"X-WNS-CONTINUE-AFTER": str(retry_after)} if retry_after is not None else None
        return wns_error(406, "The channel is throttled", headers)
    retry = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if error == "500":
        return wns_error(500, "Internal server error", retry)
    if error == "503":
        return wns_error(503, "The service is unavailable", retry)
    if error == "too_large":
        return wns_error(413, "The notification payload exceeds the 5000 byte limit")
    if error == "expired_token":
        return wns_error(401, "Token expired", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return wns_error(403, "The cloud service is not authorized to send to this channel")  # auth, mismatch


def issue_token(lab: LabState, form: dict[str, list[str]], scope: str) -> Response[bytes]:
    """The client-credentials grant: Package SID, secret, and the scope this endpoint grants."""

    def one(name: str) -> str:
        return form.get(name, [""])[0]

    creds = lab.credentials
    if one("grant_type") != "client_credentials":
        return json_response({"error": "unsupported_grant_type"}, 400)
    if one("client_id") != creds.wns_package_sid:
        return json_response({"error": "invalid_client", "error_description": "Invalid client id"}, 400)
    if not secrets.compare_digest(one("client_secret"), creds.wns_client_secret):
        return json_response({"error": "invalid_client", "error_description": "Invalid client secret"}, 400)
    if one("scope") != scope:
        return json_response({"error": "invalid_scope", "error_description": f"scope must be {scope}"}, 400)
    return json_response(
        {"access_token": wns_state(lab).issue(), "token_type": "bearer", "expires_in": TOKEN_LIFETIME}
    )


def channel_uri(lab: LabState, channel_id: str) -> str:
    """The channel URI: the notify route on the lab's HTTP/1.1 TLS origin, as WNS's is HTTPS."""
    return f"{lab.credentials.urls.http1}/wns/notify/{channel_id}"


def channel_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """The Windows app's side (control routes): mint and expire channels."""

    @post("/wns/channels")
    async def mint_channel() -> Response[bytes]:
        """What ``CreatePushNotificationChannelForApplicationAsync`` gives a Windows app."""
        channel_id = secrets.token_urlsafe(24)
        wns_state(lab).channels[channel_id] = False
        return json_response({"channel_uri": channel_uri(lab, channel_id), "id": channel_id}, 201)

    @delete("/wns/channels/{channel_id:str}", status_code=204)
    async def expire_channel(channel_id: str) -> None:
        """The channel's 30 days ran out: notifications now get 410."""
        if channel_id in wns_state(lab).channels:
            wns_state(lab).channels[channel_id] = True

    return [mint_channel, expire_channel]


def refusal(lab: LabState, request: Request, channel_id: str) -> Response[bytes] | None:
    """WNS's answer to a notification it will not take (token, channel, headers), else None."""
    state = wns_state(lab)
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    expiry = state.tokens.expires_at(bearer.strip()) if scheme.lower() == "bearer" else None
    if expiry is None:
        return wns_error(401, "Invalid token", {"WWW-Authenticate": 'Bearer error="invalid_request"'})
    if expiry <= time.time():
        return wns_error(401, "Token expired", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    expired = state.channels.get(channel_id)
    if expired is None:
        return wns_error(404, "The channel URI is not valid")
    if expired:
        return wns_error(410, "The channel expired")
    return None


def wns_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """The service's routes: the two token endpoints and the channel URIs."""

    @post("/wns/accesstoken.srf")
    async def classic_token(request: Request) -> Response[bytes]:
        """login.live.com: Package SID + secret, scope notify.windows.com."""
        return issue_token(lab, parse_qs((await request.body()).decode("utf-8", "replace")), CLASSIC_SCOPE)

    @post("/wns/{tenant:str}/oauth2/v2.0/token")
    async def entra_token(request: Request, tenant: str) -> Response[bytes]:
        """login.microsoftonline.com: the same client, scope https://wns.windows.com/.default."""
        return issue_token(lab, parse_qs((await request.body()).decode("utf-8", "replace")), ENTRA_SCOPE)

    @post("/wns/notify/{channel_id:str}")
    async def notify(request: Request, channel_id: str) -> Response[bytes] | Stream:
        """Receive one notification for a channel."""
        refused = refusal(lab, request, channel_id)
        if refused is not None:
            return refused
        problem, headers, kind = _check_headers(request)
        if problem is not None:
            return wns_error(400, problem)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return wns_error(413, f"The notification payload exceeds the {MAX_BODY_BYTES} byte limit")
        problem = check_body(kind, body) if kind != "raw" else None
        if problem is not None:
            return wns_error(400, problem)
        uri = channel_uri(lab, channel_id)
        verdict = lab.faults.judge("wns", (uri, channel_id))
        if verdict.latency_ms:
            await asyncio.sleep(verdict.latency_ms / 1000)
        if verdict.hostile is not None:
            return hostile_response(verdict.hostile)
        if verdict.error is not None:
            return fault_response(verdict.error, verdict.retry_after)
        text = body.decode("utf-8", "replace")
        lab.ledger.record(
            "wns",
            uri,
            channel_id=channel_id,
            type=kind,
            headers=headers,
            body=text,
            transport=transport_of(request),
        )
        out = {"X-WNS-Status": "received", "X-WNS-MSG-ID": secrets.token_hex(8).upper()}
        if headers.get("X-WNS-RequestForStatus") == "true":
            out["X-WNS-DeviceConnectionStatus"] = "connected"
        return empty_response(200, out)

    return [classic_token, entra_token, notify]


_KNOWN = (
    "X-WNS-Type",
    "X-WNS-Cache-Policy",
    "X-WNS-RequestForStatus",
    "X-WNS-TTL",
    "X-WNS-Tag",
    "X-WNS-Group",
    "X-WNS-PRIORITY",
    "X-WNS-SuppressPopup",
)


def _check_headers(request: Request) -> tuple[str | None, dict[str, Any], str]:
    """Validate the X-WNS-* headers; returns (problem, headers as received, type)."""
    got: dict[str, Any] = {"Content-Type": request.headers.get("content-type", "")}
    for name in _KNOWN:
        value = request.headers.get(name.lower())
        if value is not None:
            got[name] = value
    kind = TYPES.get(got.get("X-WNS-Type", ""))
    if kind is None:
        return "X-WNS-Type must be wns/toast, wns/tile, wns/badge or wns/raw", got, ""
    media = got["Content-Type"].split(";")[0].strip().lower()
    wanted = "application/octet-stream" if kind == "raw" else "text/xml"
    if media != wanted:
        return f"Content-Type must be {wanted} for wns/{kind}", got, kind
    if "X-WNS-TTL" in got and not DIGITS.fullmatch(got["X-WNS-TTL"]):
        return "X-WNS-TTL must be a number of seconds", got, kind
    for name in ("X-WNS-Tag", "X-WNS-Group"):
        if name in got and not 0 < len(got[name]) <= MAX_LABEL:
            return f"{name} must be 1-{MAX_LABEL} characters", got, kind
    if got.get("X-WNS-RequestForStatus", "true") not in ("true", "false"):
        return "X-WNS-RequestForStatus must be true or false", got, kind
    if got.get("X-WNS-Cache-Policy", "cache") not in ("cache", "no-cache"):
        return "X-WNS-Cache-Policy must be cache or no-cache", got, kind
    if got.get("X-WNS-PRIORITY", "1") not in ("1", "2", "3", "4"):
        return "X-WNS-PRIORITY must be 1-4", got, kind
    return None, got, kind
