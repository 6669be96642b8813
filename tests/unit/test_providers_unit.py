"""FCM and Web Push providers: request building, auth and classification.

``support.transport.MockTransport`` stands in for the network: this is the unit test of what goes on
the wire and how every answer is classified. The real HTTP path is covered by
``test_providers_lab.py`` against the provider lab.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import http_ece
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from support.transport import Handler, MockTransport, json_response

from pushgate.domain.notification import Notification
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.render import b64url_decode, b64url_encode, render_fcm, render_webpush
from pushgate.providers import oauth
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.providers.fcm import FcmProvider
from pushgate.providers.http import parse_retry_after
from pushgate.providers.transport import HttpRequest, HttpResponse, TransportError
from pushgate.providers.webpush import WebPushProvider

# =================================================================== FCM

TOKEN_URI = "https://oauth.test/token"
BASE_URL = "https://fcm.test"
SEND_URL = f"{BASE_URL}/v1/projects/demo-project/messages:send"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def service_account(rsa_key: rsa.RSAPrivateKey) -> dict[str, str]:
    return {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "kid-123",
        "private_key": rsa_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode(),
        "client_email": "pushgate@demo-project.iam.gserviceaccount.com",
        "token_uri": TOKEN_URI,
        "base_url": BASE_URL,
    }


def _fcm_error(code: int, status: str, message: str, error_code: str | None = None, **extra: Any) -> Any:
    details: list[dict[str, Any]] = []
    if error_code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
        )
    details.extend(extra.get("details", []))
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return {"error": err}


class FcmScript:
    """Token endpoint + a per-request send answer; counts OAuth exchanges."""

    def __init__(self, send: Callable[[HttpRequest], HttpResponse | Exception]) -> None:
        self.send = send
        self.oauth_calls = 0
        self.oauth_answer: Callable[[HttpRequest], HttpResponse | Exception] | None = None
        self.expires_in = 3599

    def __call__(self, req: HttpRequest) -> HttpResponse | Exception:
        if req.url == TOKEN_URI:
            self.oauth_calls += 1
            if self.oauth_answer is not None:
                return self.oauth_answer(req)
            return json_response(
                200, {"access_token": f"ya29.tok{self.oauth_calls}", "expires_in": self.expires_in}
            )
        return self.send(req)


async def _fcm(
    service_account: dict[str, str], send: Callable[[HttpRequest], HttpResponse | Exception], **settings: Any
) -> tuple[FcmProvider, MockTransport, FcmScript]:
    script = FcmScript(send)
    transport = MockTransport(script)
    provider = await FcmProvider.create(
        {"service_account_json": json.dumps(service_account), **settings}, transport
    )
    return provider, transport, script


def _ok(req: HttpRequest) -> HttpResponse:
    tok = json.loads(req.body)["message"]["token"]
    return json_response(200, {"name": f"projects/demo-project/messages/m-{tok}"})


async def test_fcm_sends_one_request_per_token_with_bearer(service_account: dict[str, str]) -> None:
    provider, transport, script = await _fcm(service_account, _ok)
    rendered = render_fcm(Notification(title="Hi", body="There", data={"k": "v"}, priority="high"))
    results = await provider.send_batch(rendered, [Target("r1", "tokA"), Target("r2", "tokB")])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert [r.provider_message_id for r in results] == [
        "projects/demo-project/messages/m-tokA",
        "projects/demo-project/messages/m-tokB",
    ]
    sends = [r for r in transport.requests if r.url != TOKEN_URI]
    assert len(sends) == 2 and script.oauth_calls == 1
    for req, tok in zip(sends, ("tokA", "tokB"), strict=True):
        assert req.method == "POST" and req.url == SEND_URL
        assert req.headers["Authorization"] == "Bearer ya29.tok1"
        assert req.headers["Content-Type"] == "application/json"
        assert json.loads(req.body) == {"message": {**rendered, "token": tok}}


async def test_fcm_empty_rendered_and_empty_batch(service_account: dict[str, str]) -> None:
    provider, transport, _ = await _fcm(service_account, _ok)
    assert await provider.send_batch({}, []) == []
    assert transport.requests == []
    [res] = await provider.send_batch({}, [Target("r", 'to"k')])
    assert res.outcome is Outcome.SENT
    assert json.loads(transport.requests[-1].body) == {"message": {"token": 'to"k'}}


async def test_fcm_oauth_assertion_verifies(
    service_account: dict[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    provider, transport, _ = await _fcm(service_account, _ok)
    await provider.send_batch({}, [Target("r", "t")])
    oauth = transport.requests[0]
    assert oauth.url == TOKEN_URI and oauth.method == "POST"
    assert oauth.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(oauth.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assertion = form["assertion"][0]
    assert jwt.get_unverified_header(assertion) == {"alg": "RS256", "typ": "JWT", "kid": "kid-123"}
    claims = jwt.decode(assertion, rsa_key.public_key(), algorithms=["RS256"], audience=TOKEN_URI)
    assert claims["iss"] == service_account["client_email"]
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 5


async def test_fcm_access_token_cached_and_refreshed_near_expiry(
    service_account: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, _, script = await _fcm(service_account, _ok)
    for _ in range(3):
        await provider.send_batch({}, [Target("r", "t")])
    assert script.oauth_calls == 1
    # The token is replaced 4 minutes before it expires ...
    clock = [1000.0]
    monkeypatch.setattr(oauth, "_clock", lambda: clock[0])
    provider1, _, script1 = await _fcm(service_account, _ok)
    await provider1.send_batch({}, [Target("r", "t")])
    clock[0] += 3599 - 241
    await provider1.send_batch({}, [Target("r", "t")])
    assert script1.oauth_calls == 1
    clock[0] += 2
    await provider1.send_batch({}, [Target("r", "t")])
    assert script1.oauth_calls == 2
    # ... and a short-lived one halfway through its life, not fetched again for every request.
    provider2, _, script2 = await _fcm(service_account, _ok)
    script2.expires_in = 200
    await provider2.send_batch({}, [Target("r", "t")])
    await provider2.send_batch({}, [Target("r", "t")])
    assert script2.oauth_calls == 1
    clock[0] += 101
    await provider2.send_batch({}, [Target("r", "t")])
    assert script2.oauth_calls == 2


async def test_fcm_one_refresh_in_flight(service_account: dict[str, str]) -> None:
    provider, _, script = await _fcm(service_account, _ok)
    await asyncio.gather(*(provider.send_batch({}, [Target("r", f"t{i}")]) for i in range(20)))
    assert script.oauth_calls == 1


async def test_fcm_bare_401_refreshes_and_retries_once(service_account: dict[str, str]) -> None:
    def send(req: HttpRequest) -> HttpResponse:
        if req.headers["Authorization"] == "Bearer ya29.tok1":
            return json_response(
                401, _fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            )
        return _ok(req)

    provider, transport, script = await _fcm(service_account, send)
    results = await provider.send_batch({}, [Target("a", "A"), Target("b", "B"), Target("c", "C")])
    assert all(r.outcome is Outcome.SENT for r in results)
    assert script.oauth_calls == 2  # one refresh shared by the three 401s
    sends = [r for r in transport.requests if r.url == SEND_URL]
    assert len(sends) == 6


async def test_fcm_bare_401_twice_is_credential(service_account: dict[str, str]) -> None:
    def send(req: HttpRequest) -> HttpResponse:
        return json_response(401, _fcm_error(401, "UNAUTHENTICATED", "bad creds"))

    provider, transport, script = await _fcm(service_account, send)
    [res] = await provider.send_batch({}, [Target("a", "A")])
    assert res.outcome is Outcome.CREDENTIAL
    assert res.error_code == "UNAUTHENTICATED"
    assert res.error_message == "bad creds"
    assert script.oauth_calls == 2
    assert len([r for r in transport.requests if r.url == SEND_URL]) == 2


async def test_fcm_oauth_rejected_is_credential_for_every_target(service_account: dict[str, str]) -> None:
    provider, transport, script = await _fcm(service_account, _ok)
    script.oauth_answer = lambda req: json_response(
        400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    )
    results = await provider.send_batch({}, [Target("a", "A"), Target("b", "B")])
    assert [r.outcome for r in results] == [Outcome.CREDENTIAL, Outcome.CREDENTIAL]
    assert all(r.error_code == "oauth_failed" for r in results)
    assert results[0].error_message and "invalid_grant: Invalid JWT Signature." in results[0].error_message
    assert all(r.url == TOKEN_URI for r in transport.requests)


@pytest.mark.parametrize(
    "answer",
    [lambda req: TransportError("connection refused"), lambda req: json_response(503, {"error": "backend"})],
)
async def test_fcm_oauth_unreachable_is_retryable(service_account: dict[str, str], answer: Any) -> None:
    provider, _, script = await _fcm(service_account, _ok)
    script.oauth_answer = answer
    [res] = await provider.send_batch({}, [Target("a", "A")])
    assert res.outcome is Outcome.PROVIDER_TRANSIENT and res.error_code == "oauth_failed"
    # the next batch tries again and succeeds
    script.oauth_answer = None
    [res] = await provider.send_batch({}, [Target("a", "A")])
    assert res.outcome is Outcome.SENT


TOKEN_MSG = "The registration token is not a valid FCM registration token"
# An hour ahead, so the seconds left stay within the rows' 20% tolerance however long the suite runs first.
#: Stands for "an HTTP date one hour after the request": ``_fresh`` writes the date when the answer
#: is given, so the expected 3600 s holds however long after collection the test runs.
RFC1123_FUTURE = "<http-date one hour ahead>"


def _fresh(answer: HttpResponse | Exception) -> HttpResponse | Exception:
    if isinstance(answer, HttpResponse) and answer.headers.get("retry-after") == RFC1123_FUTURE:
        date = email.utils.formatdate(time.time() + 3600, usegmt=True)
        return HttpResponse(answer.status, {**answer.headers, "retry-after": date}, answer.body)
    return answer


FCM_TABLE: list[tuple[str, HttpResponse | Exception, Outcome, str, float | None]] = [
    (
        "400 invalid token",
        json_response(400, _fcm_error(400, "INVALID_ARGUMENT", TOKEN_MSG, "INVALID_ARGUMENT")),
        Outcome.DEVICE_TERMINAL,
        "INVALID_ARGUMENT",
        None,
    ),
    (
        "400 token fieldViolation",
        json_response(
            400,
            _fcm_error(
                400,
                "INVALID_ARGUMENT",
                "Request contains an invalid argument.",
                "INVALID_ARGUMENT",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [
                            {"field": "message.token", "description": "Invalid registration token"}
                        ],
                    }
                ],
            ),
        ),
        Outcome.DEVICE_TERMINAL,
        "INVALID_ARGUMENT",
        None,
    ),
    (
        "400 payload",
        json_response(
            400,
            _fcm_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'message.android.ttl' (google.protobuf.Duration), \"x\"",
                "INVALID_ARGUMENT",
            ),
        ),
        Outcome.PAYLOAD,
        "INVALID_ARGUMENT",
        None,
    ),
    (
        "400 no detail",
        json_response(400, _fcm_error(400, "INVALID_ARGUMENT", "Message is too big")),
        Outcome.PAYLOAD,
        "INVALID_ARGUMENT",
        None,
    ),
    (
        "401 third party",
        json_response(401, _fcm_error(401, "UNAUTHENTICATED", "APNs auth error", "THIRD_PARTY_AUTH_ERROR")),
        Outcome.CREDENTIAL,
        "THIRD_PARTY_AUTH_ERROR",
        None,
    ),
    (
        "403 sender mismatch",
        json_response(403, _fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")),
        Outcome.DEVICE_TERMINAL,
        "SENDER_ID_MISMATCH",
        None,
    ),
    (
        "403 no detail",
        json_response(
            403, _fcm_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied")
        ),
        Outcome.CREDENTIAL,
        "PERMISSION_DENIED",
        None,
    ),
    (
        "404 unregistered",
        json_response(404, _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")),
        Outcome.DEVICE_TERMINAL,
        "UNREGISTERED",
        None,
    ),
    (
        "429 without retry-after",
        json_response(429, _fcm_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED")),
        Outcome.QUOTA,
        "QUOTA_EXCEEDED",
        60.0,
    ),
    (
        "429 short retry-after raised to 60",
        json_response(
            429, _fcm_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED"), {"retry-after": "5"}
        ),
        Outcome.QUOTA,
        "QUOTA_EXCEEDED",
        60.0,
    ),
    (
        "429 long retry-after kept",
        json_response(
            429, _fcm_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED"), {"retry-after": "300"}
        ),
        Outcome.QUOTA,
        "QUOTA_EXCEEDED",
        300.0,
    ),
    (
        "500 internal",
        json_response(500, _fcm_error(500, "INTERNAL", "Internal error", "INTERNAL")),
        Outcome.PROVIDER_TRANSIENT,
        "INTERNAL",
        None,
    ),
    (
        "503 with retry-after",
        json_response(503, _fcm_error(503, "UNAVAILABLE", "busy", "UNAVAILABLE"), {"retry-after": "17"}),
        Outcome.PROVIDER_TRANSIENT,
        "UNAVAILABLE",
        17.0,
    ),
    (
        "503 no body",
        HttpResponse(503, {"retry-after": RFC1123_FUTURE}, b""),
        Outcome.PROVIDER_TRANSIENT,
        "http_503",
        3600.0,
    ),
    (
        "502 html",
        HttpResponse(502, {}, b"<html>bad gateway</html>"),
        Outcome.PROVIDER_TRANSIENT,
        "http_502",
        None,
    ),
    (
        "unspecified 500",
        json_response(500, _fcm_error(500, "UNKNOWN", "?", "UNSPECIFIED_ERROR")),
        Outcome.PROVIDER_TRANSIENT,
        "UNSPECIFIED_ERROR",
        None,
    ),
    ("404 without FcmError", HttpResponse(404, {}, b"Not Found"), Outcome.PAYLOAD, "http_404", None),
    ("413", HttpResponse(413, {}, b""), Outcome.PAYLOAD, "http_413", None),
    ("network", TransportError("connection reset"), Outcome.PROVIDER_TRANSIENT, "network", None),
]


@pytest.mark.parametrize(
    ("label", "answer", "outcome", "code", "retry_after"), FCM_TABLE, ids=[r[0] for r in FCM_TABLE]
)
async def test_fcm_classification(
    service_account: dict[str, str],
    label: str,
    answer: HttpResponse | Exception,
    outcome: Outcome,
    code: str,
    retry_after: float | None,
) -> None:
    provider, _, _ = await _fcm(service_account, lambda req: _fresh(answer))
    [res] = await provider.send_batch({"notification": {"title": "t"}}, [Target("r", "tok")])
    assert res.outcome is outcome
    assert res.error_code == code
    if retry_after is None:
        assert res.retry_after is None
    else:
        assert res.retry_after == pytest.approx(retry_after, rel=0.2)
    if isinstance(answer, HttpResponse) and answer.body.startswith(b"{"):
        assert res.error_message == json.loads(answer.body)["error"]["message"]


async def test_fcm_results_in_order_and_concurrency_bounded(service_account: dict[str, str]) -> None:
    def send(req: HttpRequest) -> HttpResponse:
        tok = json.loads(req.body)["message"]["token"]
        if tok.endswith("7"):
            return json_response(404, _fcm_error(404, "NOT_FOUND", "gone", "UNREGISTERED"))
        return _ok(req)

    provider, transport, _ = await _fcm(service_account, send, concurrency=3)
    targets = [Target(f"r{i}", f"tok{i}") for i in range(30)]
    results = await provider.send_batch({}, targets)
    assert len(results) == 30
    for i, res in enumerate(results):
        if str(i).endswith("7"):
            assert res.outcome is Outcome.DEVICE_TERMINAL
        else:
            assert res.provider_message_id == f"projects/demo-project/messages/m-tok{i}"
    assert transport.max_in_flight <= 3


async def test_fcm_settings(service_account: dict[str, str], tmp_path: Path) -> None:
    t = MockTransport(_ok)
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account))
    p = await FcmProvider.create({"service_account_file": str(path)}, t)
    assert p.project_id == "demo-project"
    assert p._send_url == SEND_URL
    sa = {k: v for k, v in service_account.items() if k != "base_url"}
    p = await FcmProvider.create({"service_account_json": json.dumps(sa), "project_id": "other"}, t)
    assert p._send_url == "https://fcm.googleapis.com/v1/projects/other/messages:send"
    p = await FcmProvider.create(
        {"service_account_json": json.dumps(service_account), "base_url": "http://127.0.0.1:9/"}, t
    )
    assert p._send_url == "http://127.0.0.1:9/v1/projects/demo-project/messages:send"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "fcm.service_account_file: required"),
        (
            {"service_account_file": "/nonexistent/sa.json"},
            "fcm.service_account_file: file not found: /nonexistent",
        ),
        ({"service_account_json": "{not json"}, "fcm.service_account_json: not valid JSON"),
        ({"service_account_json": "[]"}, "fcm.service_account_json: must be a JSON object"),
        ({"service_account_json": {"drop": "client_email"}}, "missing or empty field 'client_email'"),
        ({"service_account_json": {"drop": "token_uri"}}, "missing or empty field 'token_uri'"),
        ({"service_account_json": {"set": ("private_key", "nope")}}, "field 'private_key' is not a PEM"),
        ({"service_account_json": {"drop": "project_id"}}, "fcm.project_id: required"),
        ({"service_account_json": {}, "concurrency": 0}, "fcm.concurrency"),
        ({"service_account_json": {}, "base_url": "fcm.googleapis.com"}, "fcm.base_url"),
    ],
)
async def test_fcm_config_errors_name_the_key(
    service_account: dict[str, str], settings: dict[str, Any], message: str
) -> None:
    settings = dict(settings)
    spec = settings.get("service_account_json")
    if isinstance(spec, dict):
        sa = dict(service_account)
        if "drop" in spec:
            sa.pop(spec["drop"])
        if "set" in spec:
            sa[spec["set"][0]] = spec["set"][1]
        settings["service_account_json"] = json.dumps(sa)
    with pytest.raises(ProviderConfigError) as info:
        await FcmProvider.create(settings, MockTransport(_ok))
    assert message in str(info.value)


async def test_fcm_rejects_non_rsa_key(service_account: dict[str, str]) -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        .decode()
    )
    with pytest.raises(ProviderConfigError, match="must be an RSA key"):
        await FcmProvider.create(
            {"service_account_json": json.dumps({**service_account, "private_key": ec_pem})},
            MockTransport(_ok),
        )


# =================================================================== Web Push

ENDPOINT = "https://push.example.net:8443/wpush/v2/abc123"


@pytest.fixture(scope="module")
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _raw(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))


def _pub(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url_encode(key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


class Browser:
    """A subscription we hold the private half of, like a browser would."""

    def __init__(self, endpoint: str = ENDPOINT) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = b"S" * 16
        self.endpoint = endpoint

    @property
    def token(self) -> str:
        return json.dumps(
            {"endpoint": self.endpoint, "keys": {"p256dh": _pub(self.key), "auth": b64url_encode(self.auth)}},
            separators=(",", ":"),
        )

    def decrypt(self, body: bytes) -> bytes:
        out: bytes = http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm")
        return out


async def _webpush(
    vapid_key: ec.EllipticCurvePrivateKey, handler: Handler, **settings: Any
) -> tuple[WebPushProvider, MockTransport]:
    transport = MockTransport(handler)
    provider = await WebPushProvider.create(
        {"vapid_subject": "mailto:ops@example.com", "vapid_private_key": _raw(vapid_key), **settings},
        transport,
    )
    return provider, transport


def _created(req: HttpRequest) -> HttpResponse:
    return HttpResponse(201, {"location": "https://push.example.net/m/msg-42", "ttl": "3600"}, b"")


def _vapid_parts(header: str) -> dict[str, str]:
    assert header.startswith("vapid ")
    parts = {}
    for item in header[len("vapid ") :].split(","):
        k, _, v = item.strip().partition("=")
        parts[k] = v
    return parts


async def test_webpush_request_encrypts_and_signs(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    provider, transport = await _webpush(vapid_key, _created)
    browser = Browser()
    rendered = render_webpush(
        Notification(title="Hi", body="There", ttl_seconds=3600, priority="high", collapse_key="c1")
    )
    [res] = await provider.send_batch(rendered, [Target("r", browser.token)])
    assert res == SendResult(Outcome.SENT, provider_message_id="msg-42")

    [req] = transport.requests
    assert req.method == "POST" and req.url == ENDPOINT
    assert req.headers["TTL"] == "3600"
    assert req.headers["Urgency"] == "high"
    assert req.headers["Topic"] == "c1"
    assert req.headers["Content-Encoding"] == "aes128gcm"
    assert req.headers["Content-Type"] == "application/octet-stream"
    assert browser.decrypt(req.body) == rendered.payload

    vapid = _vapid_parts(req.headers["Authorization"])
    assert vapid["k"] == _pub(vapid_key) == provider.public_key_b64
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(vapid["k"]))
    claims = jwt.decode(vapid["t"], pub, algorithms=["ES256"], audience="https://push.example.net:8443")
    assert claims["sub"] == "mailto:ops@example.com"
    assert 11.9 * 3600 < claims["exp"] - time.time() <= 12 * 3600
    assert jwt.get_unverified_header(vapid["t"])["alg"] == "ES256"


async def test_webpush_vapid_cached_per_origin_and_reminted(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    provider, transport = await _webpush(vapid_key, _created)
    a1, a2 = Browser("https://a.example/1"), Browser("https://a.example/2")
    b = Browser("https://b.example/1")
    rendered = render_webpush(Notification(body="x"))
    await provider.send_batch(rendered, [Target("1", a1.token), Target("2", a2.token), Target("3", b.token)])
    t = [_vapid_parts(r.headers["Authorization"])["t"] for r in transport.requests]
    assert t[0] == t[1] != t[2]
    assert jwt.decode(t[2], options={"verify_signature": False})["aud"] == "https://b.example"
    # less than an hour left → a fresh token
    header, _ = provider._vapid_cache["https://a.example"]
    provider._vapid_cache["https://a.example"] = (header, int(time.time()) + 3500)
    await provider.send_batch(rendered, [Target("1", a1.token)])
    assert _vapid_parts(transport.requests[-1].headers["Authorization"])["t"] != t[0]


async def test_webpush_each_message_fresh_ciphertext(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    provider, transport = await _webpush(vapid_key, _created)
    browser = Browser()
    rendered = render_webpush(Notification(body="same"))
    await provider.send_batch(rendered, [Target("1", browser.token), Target("2", browser.token)])
    b1, b2 = (r.body for r in transport.requests)
    assert b1 != b2 and browser.decrypt(b1) == browser.decrypt(b2) == rendered.payload


async def test_webpush_message_id_from_body(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    provider, _ = await _webpush(vapid_key, lambda req: json_response(202, {"message-id": "abc"}))
    [res] = await provider.send_batch(render_webpush(Notification(body="x")), [Target("r", Browser().token)])
    assert res.outcome is Outcome.SENT and res.provider_message_id == "abc"


async def test_webpush_bad_subscription_is_terminal_without_request(
    vapid_key: ec.EllipticCurvePrivateKey,
) -> None:
    provider, transport = await _webpush(vapid_key, _created)
    good = Browser()
    results = await provider.send_batch(
        render_webpush(Notification(body="x")),
        [
            Target("1", "not-json"),
            Target("2", good.token),
            Target("3", '{"endpoint":"https://x/","keys":{}}'),
        ],
    )
    assert [r.outcome for r in results] == [Outcome.DEVICE_TERMINAL, Outcome.SENT, Outcome.DEVICE_TERMINAL]
    assert results[0].error_code == results[2].error_code == "bad_subscription"
    assert results[2].error_message and results[2].error_message.startswith("keys.p256dh")
    assert len(transport.requests) == 1


WEBPUSH_TABLE: list[tuple[str, HttpResponse | Exception, Outcome, str | None, float | None]] = [
    ("200", HttpResponse(200, {}, b""), Outcome.SENT, None, None),
    ("201", HttpResponse(201, {"location": "https://p/m/id"}, b""), Outcome.SENT, None, None),
    ("202", HttpResponse(202, {}, b""), Outcome.SENT, None, None),
    (
        "400 autopush",
        json_response(
            400, {"code": 400, "errno": 111, "error": "Bad Request", "message": "Missing TTL header"}
        ),
        Outcome.PAYLOAD,
        "http_400",
        None,
    ),
    (
        "400 apple topic",
        json_response(400, {"reason": "BadWebPushTopic"}),
        Outcome.PAYLOAD,
        "BadWebPushTopic",
        None,
    ),
    (
        "401",
        json_response(401, {"code": 401, "errno": 109, "error": "Unauthorized", "message": "Missing VAPID"}),
        Outcome.CREDENTIAL,
        "http_401",
        None,
    ),
    ("403 apple", json_response(403, {"reason": "BadJwtToken"}), Outcome.CREDENTIAL, "BadJwtToken", None),
    (
        "404",
        json_response(
            404, {"code": 404, "errno": 102, "error": "Not Found", "message": "Request did not validate"}
        ),
        Outcome.DEVICE_TERMINAL,
        "http_404",
        None,
    ),
    (
        "410",
        json_response(410, {"code": 410, "errno": 106, "error": "Gone"}),
        Outcome.DEVICE_TERMINAL,
        "http_410",
        None,
    ),
    ("413", json_response(413, {"code": 413, "errno": 104}), Outcome.PAYLOAD, "http_413", None),
    ("415 other 4xx", HttpResponse(415, {}, b""), Outcome.PAYLOAD, "http_415", None),
    ("429 seconds", HttpResponse(429, {"retry-after": "120"}, b""), Outcome.QUOTA, "http_429", 120.0),
    (
        "429 http-date",
        HttpResponse(429, {"retry-after": RFC1123_FUTURE}, b""),
        Outcome.QUOTA,
        "http_429",
        3600.0,
    ),
    ("429 no header", HttpResponse(429, {}, b""), Outcome.QUOTA, "http_429", None),
    ("500", HttpResponse(500, {}, b"oops"), Outcome.PROVIDER_TRANSIENT, "http_500", None),
    ("502", json_response(502, {"code": 502, "errno": 202}), Outcome.PROVIDER_TRANSIENT, "http_502", None),
    ("503", HttpResponse(503, {"retry-after": "30"}, b""), Outcome.PROVIDER_TRANSIENT, "http_503", 30.0),
    ("network", TransportError("timed out"), Outcome.PROVIDER_TRANSIENT, "network", None),
]


@pytest.mark.parametrize(
    ("label", "answer", "outcome", "code", "retry_after"), WEBPUSH_TABLE, ids=[r[0] for r in WEBPUSH_TABLE]
)
async def test_webpush_classification(
    vapid_key: ec.EllipticCurvePrivateKey,
    label: str,
    answer: HttpResponse | Exception,
    outcome: Outcome,
    code: str | None,
    retry_after: float | None,
) -> None:
    provider, _ = await _webpush(vapid_key, lambda req: _fresh(answer))
    [res] = await provider.send_batch(render_webpush(Notification(body="x")), [Target("r", Browser().token)])
    assert res.outcome is outcome
    assert res.error_code == code
    if retry_after is None:
        assert res.retry_after is None
    else:
        assert res.retry_after == pytest.approx(retry_after, rel=0.2)
    if label == "201":
        assert res.provider_message_id == "id"
    if label == "404":
        assert res.error_message == "errno 102: Request did not validate"


async def test_webpush_concurrency_bounded_and_ordered(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    def handler(req: HttpRequest) -> HttpResponse:
        return HttpResponse(410 if req.url.endswith("/5") else 201, {}, b"")

    provider, transport = await _webpush(vapid_key, handler, concurrency=2)
    targets = [Target(str(i), Browser(f"https://p.example/{i}").token) for i in range(10)]
    results = await provider.send_batch(render_webpush(Notification(body="x")), targets)
    assert [r.outcome for r in results] == [
        Outcome.DEVICE_TERMINAL if i == 5 else Outcome.SENT for i in range(10)
    ]
    assert transport.max_in_flight <= 2


async def test_webpush_pem_key_and_matching_public_key(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    pem = vapid_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    provider, _ = await _webpush(
        vapid_key, _created, vapid_private_key=pem, vapid_public_key=_pub(vapid_key) + "="
    )
    assert provider.public_key_b64 == _pub(vapid_key)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"vapid_subject": None}, "webpush.vapid_subject: required"),
        ({"vapid_subject": "ops@example.com"}, "webpush.vapid_subject: must start with"),
        ({"vapid_private_key": None}, "webpush.vapid_private_key: required"),
        ({"vapid_private_key": "AAAA"}, "webpush.vapid_private_key: unusable key"),
        (
            {"vapid_private_key": "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----"},
            "vapid_private_key",
        ),
        ({"vapid_public_key": "BAD!"}, "webpush.vapid_public_key: not valid base64url"),
        ({"vapid_public_key": "other"}, "webpush.vapid_public_key: does not match"),
        ({"concurrency": -1}, "webpush.concurrency"),
    ],
)
async def test_webpush_config_errors_name_the_key(
    vapid_key: ec.EllipticCurvePrivateKey, override: dict[str, Any], message: str
) -> None:
    settings: dict[str, Any] = {
        "vapid_subject": "mailto:ops@example.com",
        "vapid_private_key": _raw(vapid_key),
    }
    if override.get("vapid_public_key") == "other":
        override = {"vapid_public_key": _pub(ec.generate_private_key(ec.SECP256R1()))}
    settings.update(override)
    settings = {k: v for k, v in settings.items() if v is not None}
    with pytest.raises(ProviderConfigError) as info:
        await WebPushProvider.create(settings, MockTransport(_created))
    assert message in str(info.value)


# =================================================================== helpers


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") is None
    assert parse_retry_after("inf") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0.0
