"""Xiaomi MiPush v3 ``/v3/message/regid`` simulator (docs/providers.md#mipush).

Checks what MiPush checks: ``Authorization: key=<AppSecret>`` (21301), the package name
(22022), the required form fields and their limits (title < 50, description < 128, ≤ 1,000
regIds: 10017), and the payload size (65009). Answers are HTTP 200 with MiPush's JSON,
``data.bad_regids`` listing the regIds that failed.

Faults: ``unregistered``/``invalid``/``sender_mismatch`` fail single regIds (listed in
``bad_regids``, or ``20301`` when no regId of the request is valid); the others fail the whole
request with MiPush's code for them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from pushgate.lab.faults import ErrorKind
from pushgate.lab.responses import json_response, transport_of
from pushgate.lab.state import LabState

MAX_REGIDS = 1000
MAX_PAYLOAD_BYTES = 4096
TOKEN_FAULTS = frozenset({"unregistered", "invalid", "sender_mismatch", "topic_mismatch"})


def error(code: int, reason: str) -> Response[bytes]:
    """MiPush's error body (still HTTP 200)."""
    return json_response(
        {
            "result": "error",
            "code": code,
            "reason": reason,
            "description": reason,
            "trace_id": secrets.token_hex(12),
        }
    )


def fault_answer(kind: ErrorKind) -> Response[bytes]:
    """MiPush's answer to a whole-request fault."""
    if kind in ("429", "quota"):
        return error(10027, "API called too often")
    if kind == "503":
        return error(10002, "Server busy")
    if kind == "500":
        return error(10003, "Remote server error")
    if kind == "too_large":
        return error(65009, "Message content too long")
    return error(21301, "Authentication failed")  # auth, expired_token


def _check_fields(form: dict[str, str]) -> Response[bytes] | None:
    for name in ("registration_id", "restricted_package_name", "payload", "pass_through"):
        if name not in form:
            return error(10016, f"Missing required parameter: {name}")
    if form["pass_through"] not in ("0", "1"):
        return error(10017, "Invalid parameter: pass_through")
    if form["pass_through"] == "0":
        title, description = form.get("title", ""), form.get("description", "")
        if not title or not description:
            return error(10016, "Missing required parameter: title/description")
        if len(title) >= 50:
            return error(10017, "Invalid parameter: title must be shorter than 50 characters")
        if len(description) >= 128:
            return error(10017, "Invalid parameter: description must be shorter than 128 characters")
    for name in ("notify_type", "notify_id", "time_to_live"):
        if name in form and not form[name].lstrip("-").isdigit():
            return error(10017, f"Invalid parameter: {name}")
    if len(form["payload"].encode("utf-8")) > MAX_PAYLOAD_BYTES:
        return error(65009, "Message content too long")
    return None


def mipush_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """Route handlers bound to this lab's state."""
    creds = lab.credentials

    @post("/mipush/v3/message/regid")
    async def send(request: Request) -> Response[bytes]:
        """Authenticate, validate, apply faults per regId, record the accepted ones."""
        scheme, _, secret = request.headers.get("authorization", "").partition("=")
        if scheme != "key" or not secrets.compare_digest(secret, creds.mipush_app_secret):
            return error(21301, "Authentication failed")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return error(10017, "Content-Type must be application/x-www-form-urlencoded")
        parsed = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        form = {k: v[0] for k, v in parsed.items()}
        problem = _check_fields(form)
        if problem is not None:
            return problem
        if form["restricted_package_name"] != creds.mipush_package_name:
            return error(22022, "Invalid package name")
        regids = [r for r in form["registration_id"].split(",") if r]
        if not regids or len(regids) > MAX_REGIDS:
            return error(10017, f"Invalid parameter: registration_id (1-{MAX_REGIDS} regIds)")
        verdicts = [lab.faults.judge("mipush", (r,)) for r in regids]
        latency = max((v.latency_ms for v in verdicts), default=0)
        if latency:
            await asyncio.sleep(latency / 1000)
        for v in verdicts:
            if v.error is not None and v.error not in TOKEN_FAULTS:
                return fault_answer(v.error)
        bad = [r for r, v in zip(regids, verdicts, strict=True) if v.error is not None]
        if len(bad) == len(regids):
            return error(20301, "Send failed: no valid target")
        fields = {k: v for k, v in form.items() if k != "registration_id"}
        bad_set = set(bad)
        for r in regids:
            if r not in bad_set:
                lab.ledger.record(
                    "mipush", r, fields=fields, batch_size=len(regids), transport=transport_of(request)
                )
        data: dict[str, Any] = {"id": f"slm{int(time.time() * 1000)}{secrets.token_hex(6)}"}
        if bad:
            data["bad_regids"] = ",".join(bad)
        return json_response(
            {
                "result": "ok",
                "code": 0,
                "data": data,
                "description": "成功",
                "info": f"Received push messages for {len(regids) - len(bad)} REGID",
                "trace_id": secrets.token_hex(12),
            }
        )

    return [send]
