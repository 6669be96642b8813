"""``bench e2e --raw``: a raw libcurl blast of the same requests at the same lab.

The ceiling the issue compares pushgate to ("≥ 0.4x a raw libcurl/wrk blast"): every request is
rendered *before* the clock starts (FCM JSON with one OAuth token, APNs JSON with one ES256 JWT,
Web Push bodies already encrypted to each subscription with one VAPID header), then libcurl's
multi interface (pycurl) sends them with ``concurrency`` transfers in flight: HTTP/2 multiplexed
over TLS for APNs, HTTP/1.1 keep-alive for FCM and Web Push (the lab's plain-HTTP endpoints).
What remains is the cost of the wire and of the lab answering. ``wrk`` is not used because it
speaks neither HTTP/2 (APNs needs it) nor a different body per request without a Lua script.

Needs the ``bench`` extra (pycurl, google-auth).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from pushgate.bench.targets import NOTIFICATION, LabCredentials, Target

__all__ = ["RawRequest", "blast", "render_requests"]

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
WEBPUSH_TTL = 2419200


@dataclass(frozen=True, slots=True)
class RawRequest:
    provider: str
    url: str
    headers: list[str]
    body: bytes
    http2: bool


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _fcm_token(creds: LabCredentials) -> str:
    try:
        from google.auth.transport.requests import Request
        from google.oauth2 import service_account
    except ImportError as exc:
        raise RuntimeError(
            f"--raw needs the bench extra: pip install 'pushgate[bench]' ({exc.name})"
        ) from None
    account = creds.fcm_service_account
    credential = service_account.Credentials.from_service_account_info(
        account, scopes=[FCM_SCOPE], additional_claims={"aud": account["token_uri"]}
    )
    credential.refresh(Request())
    return str(credential.token)


def render_requests(creds: LabCredentials, targets: Sequence[Target]) -> list[RawRequest]:
    """One ready-to-send request per target (skipping providers other than fcm/apns/webpush)."""
    providers = {t.provider for t in targets}
    project = creds.fcm_service_account["project_id"]
    fcm_url = f"{creds.fcm_base_url}/v1/projects/{project}/messages:send"
    fcm_headers = (
        [f"Authorization: Bearer {_fcm_token(creds)}", "Content-Type: application/json"]
        if "fcm" in providers
        else []
    )
    apns_jwt = jwt.encode(
        {"iss": creds.apns_team_id, "iat": int(time.time())},
        creds.apns_key_pem,
        algorithm="ES256",
        headers={"kid": creds.apns_key_id},
    )
    apns_headers = [
        f"authorization: bearer {apns_jwt}",
        f"apns-topic: {creds.apns_topic}",
        "apns-push-type: alert",
        "apns-priority: 10",
        "content-type: application/json",
    ]
    alert = {"title": NOTIFICATION["title"], "body": NOTIFICATION["body"]}
    apns_body = json.dumps({"aps": {"alert": alert}, **NOTIFICATION["data"]}).encode()
    webpush_payload = json.dumps(NOTIFICATION).encode()
    vapid = Vapid02.from_string(private_key=creds.vapid_private_key)
    vapid_headers: dict[str, list[str]] = {}  # origin -> headers (one VAPID JWT per push service)

    requests: list[RawRequest] = []
    for t in targets:
        if t.provider == "fcm":
            message = {"token": t.token, "notification": alert, "data": NOTIFICATION["data"]}
            requests.append(
                RawRequest("fcm", fcm_url, fcm_headers, json.dumps({"message": message}).encode(), False)
            )
        elif t.provider == "apns":
            url = f"{creds.apns_url}/3/device/{t.token}"
            requests.append(RawRequest("apns", url, apns_headers, apns_body, True))
        elif t.provider == "webpush":
            sub = json.loads(t.token)
            endpoint: str = sub["endpoint"]
            origin = "/".join(endpoint.split("/", 3)[:3])
            if origin not in vapid_headers:
                signed = vapid.sign(
                    {"sub": creds.vapid_subject, "aud": origin, "exp": int(time.time()) + 43200}
                )
                vapid_headers[origin] = [
                    f"Authorization: {signed['Authorization']}",
                    "Content-Encoding: aes128gcm",
                    "Content-Type: application/octet-stream",
                    f"TTL: {WEBPUSH_TTL}",
                ]
            body = http_ece.encrypt(
                webpush_payload,
                salt=os.urandom(16),
                private_key=ec.generate_private_key(ec.SECP256R1()),
                dh=_b64url_decode(sub["keys"]["p256dh"]),
                auth_secret=_b64url_decode(sub["keys"]["auth"]),
                version="aes128gcm",
            )
            requests.append(RawRequest("webpush", endpoint, vapid_headers[origin], body, False))
    return requests


def blast(requests: Sequence[RawRequest], *, concurrency: int, ca_file: str) -> dict[str, Any]:
    """Send ``requests`` with libcurl's multi interface, ``concurrency`` in flight; time it."""
    try:
        import pycurl
    except ImportError as exc:
        raise RuntimeError(
            f"--raw needs the bench extra: pip install 'pushgate[bench]' ({exc.name})"
        ) from None
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
    # One HTTP/2 connection carries every APNs stream (curl's default cap is 100 per connection,
    # past which it would open more connections, each starting at APNs' one-stream limit).
    multi.setopt(pycurl.M_MAX_CONCURRENT_STREAMS, 1000)
    free: list[Any] = []
    for _ in range(max(1, min(concurrency, len(requests)))):
        c = pycurl.Curl()
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.TIMEOUT, 60)
        c.setopt(pycurl.CAINFO, ca_file)
        c.setopt(pycurl.PIPEWAIT, 1)  # wait to multiplex on an HTTP/2 connection rather than open more
        c.setopt(pycurl.WRITEFUNCTION, len)  # discard the answer body
        c.setopt(pycurl.POST, 1)
        free.append(c)
    outcomes: Counter[str] = Counter()
    started_cpu, started = time.process_time(), time.perf_counter()
    # APNs (and the lab's simulator) allow one stream until the first request is authenticated,
    # then raise SETTINGS_MAX_CONCURRENT_STREAMS; a client that opens more streams before that
    # SETTINGS frame arrives gets them reset. So the first HTTP/2 request goes alone.
    first_h2 = next((i for i, r in enumerate(requests) if r.http2), None)
    order = ([requests[first_h2]] if first_h2 is not None else []) + [
        r for i, r in enumerate(requests) if i != first_h2
    ]
    pending = iter(order)
    providers: dict[Any, str] = {}
    active = 0
    exhausted = False
    warming = first_h2 is not None
    while True:
        while free and not exhausted and not (warming and active):
            req = next(pending, None)
            if req is None:
                exhausted = True
                break
            c = free.pop()
            c.setopt(pycurl.URL, req.url)
            c.setopt(pycurl.HTTPHEADER, req.headers)
            c.setopt(pycurl.POSTFIELDSIZE, len(req.body))
            c.setopt(pycurl.POSTFIELDS, req.body)  # pycurl keeps a reference; binary-safe with the size
            c.setopt(
                pycurl.HTTP_VERSION,
                pycurl.CURL_HTTP_VERSION_2TLS if req.http2 else pycurl.CURL_HTTP_VERSION_1_1,
            )
            providers[c] = req.provider
            multi.add_handle(c)
            active += 1
        if active == 0:
            break
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, ok, failed = multi.info_read()
            for c in ok:
                warming = False
                status = c.getinfo(pycurl.RESPONSE_CODE)
                outcomes["sent" if status in (200, 201) else f"{providers[c]}:{status}"] += 1
                multi.remove_handle(c)
                free.append(c)
                active -= 1
            for c, errno, _message in failed:
                warming = False
                outcomes[f"{providers[c]}:curl error {errno}"] += 1
                multi.remove_handle(c)
                free.append(c)
                active -= 1
            if not queued:
                break
        if not free or exhausted or warming:
            multi.select(0.01)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - started_cpu
    sent = outcomes.pop("sent", 0)
    return {
        "sent": sent,
        "errors": dict(outcomes),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "concurrency": concurrency,
        "requests_per_second": round(sent / seconds, 1) if seconds > 0 else 0.0,
    }
