"""FCM HTTP v1 `messages:send` (docs/providers.md#fcm).

Validates what FCM validates (bearer token, project, one target, string data without
reserved keys, Android TTL/priority, size, token shape) and answers with google.rpc.Status
bodies, so pushgate's error classification is tested against the real shapes: an
INVALID_ARGUMENT about the token must be told apart from one about the payload, and a 401
with an FcmError detail (THIRD_PARTY_AUTH_ERROR) from a plain expired access token.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from pushgate.lab.credentials import PROJECT_ID
from pushgate.lab.faults import ErrorKind
from pushgate.lab.responses import json_response, transport_of
from pushgate.lab.state import LabState

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
QUOTA_FAILURE_TYPE = "type.googleapis.com/google.rpc.QuotaFailure"

TOKEN_RE = re.compile(r"[A-Za-z0-9_\-:.]{8,4096}")
TOPIC_RE = re.compile(r"(/topics/)?[A-Za-z0-9\-_.~%]{1,900}")
DURATION_RE = re.compile(r"(\d+)(\.\d{1,9})?s")
MAX_TTL_SECONDS = 2_419_200
MAX_MESSAGE_BYTES = 4096
MAX_TOPIC_MESSAGE_BYTES = 2048
BAD_TOKEN_MESSAGE = "The registration token is not a valid FCM registration token"
MESSAGE_FIELDS = frozenset(
    {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", "fcmOptions"}
    | {"token", "topic", "condition"}
)
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def rpc_status(
    code: int,
    message: str,
    error_code: str | None = None,
    extra_details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[bytes]:
    """A google.rpc.Status answer; `error_code` adds the FcmError detail FCM attaches."""
    error: dict[str, Any] = {"code": code, "message": message, "status": _STATUS_NAMES[code]}
    details = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}] if error_code else []
    details += extra_details or []
    if details:
        error["details"] = details
    return json_response({"error": error}, code, headers)


class InvalidArgument(Exception):
    """A payload problem: 400 INVALID_ARGUMENT whose message is not about the token."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def response(self) -> Response[bytes]:
        violation = {
            "@type": BAD_REQUEST_TYPE,
            "fieldViolations": [{"field": self.field, "description": self.message}],
        }
        return rpc_status(400, self.message, "INVALID_ARGUMENT", [violation])


def bad_token_response() -> Response[bytes]:
    """The exact answer FCM gives for a malformed or foreign registration token."""
    violation = {
        "@type": BAD_REQUEST_TYPE,
        "fieldViolations": [{"field": "message.token", "description": BAD_TOKEN_MESSAGE}],
    }
    return rpc_status(400, BAD_TOKEN_MESSAGE, "INVALID_ARGUMENT", [violation])


def _parse_duration(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    match = DURATION_RE.fullmatch(value)
    return float(value[:-1]) if match else None


def validate_message(body: Any) -> tuple[dict[str, Any], str, str, bool]:
    """Check a send body; returns (message, target kind, target value, validate_only).

    Raises InvalidArgument for payload errors. Token *shape* is checked by the caller, which
    needs a differently worded answer.
    """
    if not isinstance(body, dict):
        raise InvalidArgument("Invalid JSON payload received. Expected an object.", "")
    for key in body:
        if key not in ("message", "validate_only", "validateOnly"):
            raise InvalidArgument(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.', key
            )
    validate_only = body.get("validate_only", body.get("validateOnly", False))
    if not isinstance(validate_only, bool):
        raise InvalidArgument(
            f"Invalid value at 'validate_only' (TYPE_BOOL), {validate_only!r}", "validate_only"
        )
    message = body.get("message")
    if not isinstance(message, dict):
        raise InvalidArgument("Request contains an invalid argument.", "message")
    for key in message:
        if key not in MESSAGE_FIELDS:
            raise InvalidArgument(
                f"Invalid JSON payload received. Unknown name \"{key}\" at 'message': Cannot find field.",
                f"message.{key}",
            )
    targets = [key for key in ("token", "topic", "condition") if key in message]
    if len(targets) != 1:
        raise InvalidArgument("Exactly one of token, topic or condition must be specified.", "message")
    kind = targets[0]
    target = message[kind]
    if not isinstance(target, str):
        raise InvalidArgument(
            f"Invalid value at 'message.{kind}' (TYPE_STRING), {target!r}", f"message.{kind}"
        )
    if kind == "topic" and not TOPIC_RE.fullmatch(target):
        raise InvalidArgument("Invalid topic name.", "message.topic")
    _validate_data(message.get("data"))
    _validate_android(message.get("android"))
    for section in ("notification", "webpush", "apns", "fcm_options", "fcmOptions"):
        if section in message and not isinstance(message[section], dict):
            raise InvalidArgument(
                f"Invalid value at 'message.{section}', expected an object.", f"message.{section}"
            )
    limit = MAX_TOPIC_MESSAGE_BYTES if kind == "topic" else MAX_MESSAGE_BYTES
    if len(msgspec.json.encode(message)) > limit:
        raise InvalidArgument(f"Message is too big. The maximum size is {limit} bytes.", "message")
    return message, kind, target, validate_only


def _validate_data(data: Any) -> None:
    if data is None:
        return
    if not isinstance(data, dict):
        raise InvalidArgument("Invalid value at 'message.data', expected a map.", "message.data")
    for index, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            raise InvalidArgument(
                f"Invalid value at 'message.data[{index}].value' (TYPE_STRING), {json.dumps(value)}",
                f"message.data[{index}].value",
            )
        lowered = key.lower()
        if lowered in ("from", "gcm", "message_type") or lowered.startswith("google"):
            raise InvalidArgument(f"Invalid data payload key: {key}", f"message.data[{index}].key")


def _validate_android(android: Any) -> None:
    if android is None:
        return
    if not isinstance(android, dict):
        raise InvalidArgument("Invalid value at 'message.android', expected an object.", "message.android")
    if "ttl" in android:
        seconds = _parse_duration(android["ttl"])
        if seconds is None or not 0 <= seconds <= MAX_TTL_SECONDS:
            raise InvalidArgument(
                "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), "
                f"{json.dumps(android['ttl'])}",
                "message.android.ttl",
            )
    if "priority" in android and android["priority"] not in ("NORMAL", "HIGH"):
        raise InvalidArgument(
            "Invalid value at 'message.android.priority' (type.googleapis.com/"
            f"google.firebase.fcm.v1.AndroidMessagePriority), {json.dumps(android['priority'])}",
            "message.android.priority",
        )


def fault_response(error: ErrorKind, retry_after: int | None) -> Response[bytes]:
    """FCM's real answer for each injectable fault."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if error == "unregistered":
        return rpc_status(404, "Requested entity was not found.", "UNREGISTERED")
    if error == "invalid":
        return bad_token_response()
    if error == "sender_mismatch":
        return rpc_status(403, "SenderId mismatch", "SENDER_ID_MISMATCH")
    if error in ("quota", "429"):
        quota = {
            "@type": QUOTA_FAILURE_TYPE,
            "violations": [{"subject": "device", "description": "Device message rate exceeded."}],
        }
        return rpc_status(429, "Quota exceeded.", "QUOTA_EXCEEDED", [quota], headers)
    if error == "500":
        return rpc_status(500, "Internal error encountered.", "INTERNAL", headers=headers)
    if error == "503":
        return rpc_status(503, "The service is currently unavailable.", "UNAVAILABLE", headers=headers)
    return rpc_status(401, "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR")


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def fcm_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """Route handlers bound to this lab's state."""

    @post("/v1/projects/{project:str}/messages:send")
    async def send(request: Request, project: str) -> Response[bytes]:
        """Authenticate, validate, apply faults, then accept and record the message."""
        token = _bearer(request)
        if token is None or not lab.token_valid(token):
            return rpc_status(401, UNAUTHENTICATED_MESSAGE)
        if project != PROJECT_ID:
            return rpc_status(
                403,
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
            )
        try:
            body = json.loads(await request.body())
        except ValueError:
            return InvalidArgument("Invalid JSON payload received.", "").response()
        try:
            message, kind, target, validate_only = validate_message(body)
        except InvalidArgument as err:
            return err.response()
        if kind == "token" and not TOKEN_RE.fullmatch(target):
            return bad_token_response()
        verdict = lab.faults.judge("fcm", (target,))
        if verdict.latency_ms:
            await asyncio.sleep(verdict.latency_ms / 1000)
        if verdict.error is not None:
            return fault_response(verdict.error, verdict.retry_after)
        message_id = "fake_message_id" if validate_only else f"0:{secrets.token_hex(8)}"
        lab.ledger.record(
            "fcm", target, message=message, validate_only=validate_only, transport=transport_of(request)
        )
        return json_response({"name": f"projects/{PROJECT_ID}/messages/{message_id}"})

    return [send]
