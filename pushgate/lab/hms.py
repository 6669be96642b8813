"""Huawei Push Kit v1 simulator: the OAuth token endpoint and ``messages:send`` (docs/providers.md#hms).

Answers the way Push Kit does: a ``code`` in the JSON body decides, the HTTP status merely
accompanies it; a partial success lists rejected tokens in ``msg``, itself a JSON *string*. The
token endpoint checks the app id and secret and issues expiring tokens; the send endpoint checks
the bearer token, the app id in the path, the message shape (one target, ≤ 1,000 tokens, string
``data``, ``collapse_key`` range, a ``click_action`` on notifications) and the 4,096-byte limit.

Faults: ``unregistered``/``invalid``/``sender_mismatch`` fail single tokens (partial success, or
80300007 when every token of the request fails); the other kinds fail the whole request, as a
Push Kit outage or credential problem would.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from pushgate.lab.faults import ErrorKind, Verdict
from pushgate.lab.responses import json_response, transport_of
from pushgate.lab.state import IssuedTokens, LabState

TOKEN_LIFETIME = 3600
MAX_TOKENS = 1000
MAX_BODY_BYTES = 4096
MAX_TTL_SECONDS = 15 * 86400
TOKEN_RE = re.compile(r"\S{1,4096}")
TOPIC_RE = re.compile(r"[a-zA-Z0-9\-_.~%]{1,900}")
TTL_RE = re.compile(r"(\d+)(\.\d{1,9})?s")
TOKEN_FAULTS = frozenset({"unregistered", "invalid", "sender_mismatch", "topic_mismatch"})


@dataclass(slots=True)
class HmsLab:
    """Access tokens issued (kept after expiry so "expired" can be told from "unknown")."""

    tokens: IssuedTokens = field(default_factory=IssuedTokens)

    def issue(self) -> str:
        return self.tokens.issue("CV", TOKEN_LIFETIME, 32)


def hms_state(lab: LabState) -> HmsLab:
    state = lab.extras.get("hms")
    if not isinstance(state, HmsLab):
        state = lab.extras["hms"] = HmsLab()
    return state


def answer(code: str, msg: str, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    """Push Kit's body: ``{"code", "msg", "requestId"}``."""
    request_id = f"{int(time.time() * 1000)}{secrets.randbelow(10**8):08d}"
    return json_response({"code": code, "msg": msg, "requestId": request_id}, status, headers)


class MessageError(Exception):
    def __init__(self, code: str, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status

    def response(self) -> Response[bytes]:
        return answer(self.code, self.msg, self.status)


def validate(body: Any) -> tuple[dict[str, Any], str, Any]:
    """Check a send body; returns (message, target kind, target value) or raises MessageError."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise MessageError("80100003", "Illegal payload, message is required")
    if "validate_only" in body and not isinstance(body["validate_only"], bool):
        raise MessageError("80100001", "Some request parameters are incorrect: validate_only")
    message: dict[str, Any] = body["message"]
    kinds = [k for k in ("token", "topic", "condition") if k in message]
    if len(kinds) != 1:
        raise MessageError("80100003", "Illegal payload, exactly one of token, topic, condition is required")
    kind = kinds[0]
    target = message[kind]
    if kind == "token":
        if not isinstance(target, list) or not target or not all(isinstance(t, str) for t in target):
            raise MessageError(
                "80300010", "The number of tokens in the message body exceeds the default value"
            )
        if len(target) > MAX_TOKENS:
            raise MessageError(
                "80300010", "The number of tokens in the message body exceeds the default value"
            )
    elif kind == "topic":
        if not isinstance(target, str) or not TOPIC_RE.fullmatch(target):
            raise MessageError("80100001", "Some request parameters are incorrect: topic")
    elif not isinstance(target, str) or not target.strip():
        raise MessageError("80100001", "Some request parameters are incorrect: condition")
    if "data" in message and not isinstance(message["data"], str):
        raise MessageError("80100003", "Illegal payload, data must be a string")
    android = message.get("android")
    if android is not None:
        _validate_android(android)
    if "notification" not in message and not (isinstance(android, dict) and "notification" in android):
        if "data" not in message:
            raise MessageError("80100003", "Illegal payload, a notification or data is required")
    rest = {k: v for k, v in message.items() if k not in ("token", "topic", "condition")}
    if len(msgspec.json.encode(rest)) > MAX_BODY_BYTES:
        raise MessageError("80300008", "The message body size exceeds the default value", 413)
    return message, kind, target


def _validate_android(android: Any) -> None:
    if not isinstance(android, dict):
        raise MessageError("80100003", "Illegal payload, android must be an object")
    if "collapse_key" in android:
        key = android["collapse_key"]
        if not isinstance(key, int) or isinstance(key, bool) or not -1 <= key <= 100:
            raise MessageError("80100013", "The collapse_key is illegal")
    if "urgency" in android and android["urgency"] not in ("HIGH", "NORMAL"):
        raise MessageError("80100001", "Some request parameters are incorrect: urgency")
    if "ttl" in android:
        match = TTL_RE.fullmatch(str(android["ttl"])) if isinstance(android["ttl"], str) else None
        if match is None or int(match.group(1)) > MAX_TTL_SECONDS:
            raise MessageError("80100001", "Some request parameters are incorrect: ttl")
    if "data" in android and not isinstance(android["data"], str):
        raise MessageError("80100003", "Illegal payload, android.data must be a string")
    note = android.get("notification")
    if note is not None:
        _validate_notification(note)


def _validate_notification(note: Any) -> None:
    if not isinstance(note, dict):
        raise MessageError("80100003", "Illegal payload, android.notification must be an object")
    for key in ("title", "body"):
        if key in note and not isinstance(note[key], str):
            raise MessageError("80100003", f"Illegal payload, notification.{key} must be a string")
    click = note.get("click_action")
    if not isinstance(click, dict) or click.get("type") not in (1, 2, 3, 4):
        raise MessageError("80100003", "Illegal payload, click_action.type is required")
    if click["type"] == 1 and not (click.get("intent") or click.get("action")):
        raise MessageError("80100003", "Illegal payload, click_action.intent or action is required")
    if click["type"] == 2 and not click.get("url"):
        raise MessageError("80100003", "Illegal payload, click_action.url is required")
    badge = note.get("badge")
    if badge is not None and (not isinstance(badge, dict) or not badge.get("class")):
        raise MessageError("80100003", "Illegal payload, badge.class is required")
    buttons = note.get("buttons")
    if buttons is not None and (not isinstance(buttons, list) or len(buttons) > 3):
        raise MessageError("80100003", "Illegal payload, at most 3 buttons")
    if "importance" in note and note["importance"] not in ("LOW", "NORMAL"):
        raise MessageError("80100001", "Some request parameters are incorrect: importance")


def request_fault(error: ErrorKind, retry_after: int | None) -> Response[bytes]:
    """Push Kit's answer to a whole-request fault."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if error in ("quota", "429", "503"):
        # Flow control: a bare 503 without a Push Kit code.
        return Response(
            content=b"Service Unavailable", status_code=503, headers=headers or {}, media_type="text/plain"
        )
    if error == "500":
        return answer("81000001", "System inner error", 500, headers)
    if error == "too_large":
        return answer("80300008", "The message body size exceeds the default value", 413)
    if error == "expired_token":
        return answer("80200003", "OAuth token expired", 401)
    return answer("80200001", "Oauth authentication error", 401)  # auth


def issue_token(lab: LabState, version: str, form: dict[str, list[str]]) -> Response[bytes]:
    """Client-credentials grant; v2 and v3 behave the same (Huawei's demos use both)."""
    creds = lab.credentials
    grant = form.get("grant_type", [""])[0]
    client_id = form.get("client_id", [""])[0]
    secret = form.get("client_secret", [""])[0]
    if version not in ("v2", "v3"):
        return json_response({"error": "not found"}, 404)
    if grant != "client_credentials":
        return json_response(
            {"error": 1102, "sub_error": 20152, "error_description": "unsupported grant type"}, 400
        )
    if client_id != creds.hms_app_id:
        return json_response({"error": 1101, "sub_error": 20089, "error_description": "invalid client"}, 400)
    if not secrets.compare_digest(secret, creds.hms_client_secret):
        return json_response(
            {"error": 1101, "sub_error": 20186, "error_description": "invalid client secret"}, 400
        )
    access_token = hms_state(lab).issue()
    return json_response({"access_token": access_token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"})


def unauthorized(lab: LabState, request: Request, app_id: str) -> Response[bytes] | None:
    """Push Kit's refusal of the bearer token, or None. A token is bound to the app it was
    issued for, so the app id in the path must be that app."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    expiry = hms_state(lab).tokens.expires_at(bearer.strip()) if scheme == "Bearer" else None
    if expiry is None or app_id != lab.credentials.hms_app_id:
        return answer("80200001", "Oauth authentication error", 401)
    if expiry <= time.time():
        return answer("80200003", "OAuth token expired", 401)
    return None


async def judge(lab: LabState, targets: list[str]) -> tuple[list[Verdict], Response[bytes] | None]:
    """Each target's fault verdict after the longest injected latency; a whole-request fault
    (anything but a token error) answers for the whole request."""
    verdicts = [lab.faults.judge("hms", (t,)) for t in targets]
    latency = max((v.latency_ms for v in verdicts), default=0)
    if latency:
        await asyncio.sleep(latency / 1000)
    for v in verdicts:
        if v.error is not None and v.error not in TOKEN_FAULTS:
            return verdicts, request_fault(v.error, v.retry_after)
    return verdicts, None


def hms_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """Route handlers bound to this lab's state."""

    @post("/hms/oauth2/{version:str}/token")
    async def token(request: Request, version: str) -> Response[bytes]:
        return issue_token(lab, version, parse_qs((await request.body()).decode("utf-8", "replace")))

    @post("/hms/v1/{app_id:str}/messages:send")
    async def send(request: Request, app_id: str) -> Response[bytes]:
        """Authenticate, validate, apply faults per token, record what was accepted."""
        refused = unauthorized(lab, request, app_id)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.body())
        except ValueError:
            return answer("80100003", "Illegal payload, the request body is not JSON")
        try:
            message, kind, target = validate(body)
        except MessageError as err:
            return err.response()
        targets: list[str] = target if kind == "token" else [f"{kind}:{target}"]
        verdicts, whole = await judge(lab, targets)
        if whole is not None:
            return whole
        illegal = [
            t
            for t, v in zip(targets, verdicts, strict=True)
            if v.error is not None or (kind == "token" and not TOKEN_RE.fullmatch(t))
        ]
        if kind == "token" and len(illegal) == len(targets):
            return answer("80300007", "All the tokens are invalid")
        if kind != "token" and illegal:
            return answer("80100001", f"Some request parameters are incorrect: {kind}")
        if not body.get("validate_only", False):
            rest = {k: v for k, v in message.items() if k != kind}
            bad = set(illegal)
            for t in (t for t in targets if t not in bad):
                lab.ledger.record(
                    "hms",
                    t,
                    message=rest,
                    batch_size=len(targets),
                    target_kind=kind,
                    transport=transport_of(request),
                )
        if illegal:
            detail = {
                "success": len(targets) - len(illegal),
                "failure": len(illegal),
                "illegal_tokens": illegal,
            }
            return answer("80100000", json.dumps(detail, separators=(",", ":")))
        return answer("80000000", "Success")

    return [token, send]
