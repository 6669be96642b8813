"""The provider lab, driven as a real subprocess over HTTP (no mocks).

The lab is the yardstick pushgate's providers are tested against, so these tests pin the
wire behaviour: OAuth assertion checks, FCM validation and error shapes, Web Push VAPID and
decryption, the ledger, and fault injection.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import http_ece
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from py_vapid import Vapid
from support.lab import lab_process

from pushgate.lab.credentials import b64url_decode, b64url_encode, write_credentials

REPO = Path(__file__).resolve().parents[2]


#: The ledger counts every provider the lab simulates, from zero.
ALL_ZERO = dict.fromkeys(("fcm", "webpush", "apns", "hms", "wns", "mipush"), 0)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


#: Paths served by the lab's TLS listeners (the simulated services), not its control port.
H2_PATHS = ("/token", "/v1/", "/webpush/push/")
HTTP1_PATHS = ("/hms/", "/mipush/", "/wns/accesstoken.srf", "/wns/notify/", "/wns/common/")


@dataclass
class Lab:
    base: str
    creds_dir: Path

    @functools.cached_property
    def services(self) -> dict[str, str]:
        """The TLS origins of the simulated services, as ``GET /credentials`` names them."""
        with urllib.request.urlopen(self.base + "/credentials", timeout=10) as resp:
            return dict(json.loads(resp.read())["services"])

    @functools.cached_property
    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.creds_dir / "apns-ca.pem"))

    def url(self, path: str) -> str:
        if path.startswith("http"):
            return path
        if path.startswith(H2_PATHS):
            return self.services["h2"] + path
        if path.startswith(HTTP1_PATHS):
            return self.services["http1"] + path
        return self.base + path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        url = self.url(path)
        hdrs = dict(headers or {})
        data: bytes | None
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        else:
            data = body
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.tls) as resp:
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    @property
    def service_account(self) -> dict[str, Any]:
        return json.loads((self.creds_dir / "fcm-service-account.json").read_text())


@contextlib.contextmanager
def running_lab(creds_dir: Path, *extra_args: str) -> Iterator[Lab]:
    with lab_process(creds_dir, *extra_args) as url:
        yield Lab(url, creds_dir)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("labcreds")) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_faults(lab: Lab) -> Iterator[None]:
    yield
    assert lab.request("DELETE", "/faults").status == 204


# ---------------------------------------------------------------- helpers


def assertion(
    lab: Lab, *, key: Any = None, aud: str | None = None, lifetime: int = 3600, **extra: Any
) -> str:
    sa = lab.service_account
    now = int(time.time())
    claims = {
        "iss": sa["client_email"],
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": aud or sa["token_uri"],
        "iat": now,
        "exp": now + lifetime,
        **extra,
    }
    return jwt.encode(
        claims, key or sa["private_key"], algorithm="RS256", headers={"kid": sa["private_key_id"]}
    )


def token_request(
    lab: Lab, jwt_assertion: str, grant_type: str = "urn:ietf:params:oauth:grant-type:jwt-bearer"
) -> Reply:
    body = urlencode({"grant_type": grant_type, "assertion": jwt_assertion}).encode()
    return lab.request("POST", "/token", body, {"Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture(scope="module")
def access_token(lab: Lab) -> str:
    reply = token_request(lab, assertion(lab))
    assert reply.status == 200, reply.body
    return str(reply.json()["access_token"])


def fcm_send(lab: Lab, token: str, message: dict[str, Any], project: str = "pushgate-lab") -> Reply:
    return lab.request(
        "POST",
        f"/v1/projects/{project}/messages:send",
        {"message": message},
        {"Authorization": f"Bearer {token}"},
    )


def new_token() -> str:
    return f"tok-{uuid.uuid4().hex}:APA91b{uuid.uuid4().hex}"


def fcm_error(reply: Reply) -> tuple[int, str, str | None, str]:
    err = reply.json()["error"]
    codes = [d["errorCode"] for d in err.get("details", []) if d["@type"].endswith("FcmError")]
    return err["code"], err["status"], (codes[0] if codes else None), err["message"]


def vapid_private_raw(lab: Lab) -> str:
    return (lab.creds_dir / "vapid-private.txt").read_text().strip()


def subscribe(lab: Lab, application_server_key: str | None = None) -> dict[str, Any]:
    body = {"application_server_key": application_server_key} if application_server_key else None
    reply = lab.request("POST", "/webpush/subscriptions", body)
    assert reply.status == 201, reply.body
    return dict(reply.json())


def vapid_headers(endpoint: str, private_raw: str, aud: str | None = None) -> dict[str, str]:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(endpoint))
    claims = {"aud": aud or origin, "sub": "mailto:ops@example.com", "exp": int(time.time()) + 3600}
    return dict(Vapid.from_raw(private_raw.encode()).sign(claims))


def encrypt(sub: dict[str, Any], plaintext: bytes) -> bytes:
    return bytes(
        http_ece.encrypt(
            plaintext,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            dh=b64url_decode(sub["keys"]["p256dh"]),
            auth_secret=b64url_decode(sub["keys"]["auth"]),
            version="aes128gcm",
        )
    )


def push(
    lab: Lab,
    sub: dict[str, Any],
    payload: bytes,
    *,
    private_raw: str | None = None,
    aud: str | None = None,
    extra: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> Reply:
    headers = {"TTL": "60", "Urgency": "high", "Topic": "news", "Content-Encoding": "aes128gcm"}
    headers.update(vapid_headers(sub["endpoint"], private_raw or vapid_private_raw(lab), aud))
    headers.update(extra or {})
    for name in drop:
        headers.pop(name, None)
    body = encrypt(sub, payload) if payload else b""
    return lab.request("POST", sub["endpoint"], body, headers)


# ---------------------------------------------------------------- credentials & health


def test_health_and_credentials_files(lab: Lab) -> None:
    assert lab.request("GET", "/healthz").json() == {"status": "ok"}
    sa = lab.service_account
    assert sa["type"] == "service_account" and sa["project_id"] == "pushgate-lab"
    h2 = lab.services["h2"]
    assert h2.startswith("https://127.0.0.1:") and lab.services["http1"].startswith("https://127.0.0.1:")
    assert sa["token_uri"] == f"{h2}/token" and sa["base_url"] == h2
    assert "BEGIN PRIVATE KEY" in sa["private_key"]
    toml = (lab.creds_dir / "pushgate-lab.toml").read_text()
    assert f'service_account_file = "{lab.creds_dir.resolve()}/fcm-service-account.json"' in toml
    assert f'vapid_public_key = "{(lab.creds_dir / "vapid-public.txt").read_text().strip()}"' in toml
    assert toml.startswith("[devices]\nallow_loopback_endpoints = true\n")
    served = lab.request("GET", "/credentials").json()
    assert served["fcm_service_account"]["private_key_id"] == sa["private_key_id"]
    assert len(b64url_decode(served["vapid_public_key"])) == 65


def test_write_credentials_reuses_keys(tmp_path: Path) -> None:
    first = write_credentials(tmp_path, "http://127.0.0.1:1111")
    second = write_credentials(tmp_path, "http://127.0.0.1:2222")
    assert first.service_account["private_key"] == second.service_account["private_key"]
    assert first.vapid_private_b64 == second.vapid_private_b64
    assert second.service_account["token_uri"] == "http://127.0.0.1:2222/token"
    assert len(b64url_decode((tmp_path / "vapid-private.txt").read_text().strip())) == 32


# ---------------------------------------------------------------- OAuth


def test_oauth_accepts_valid_assertion(lab: Lab) -> None:
    reply = token_request(lab, assertion(lab))
    assert reply.status == 200
    body = reply.json()
    assert body["access_token"].startswith("ya29.lab-")
    assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"


def test_oauth_rejects_bad_signature(lab: Lab) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    reply = token_request(lab, assertion(lab, key=other))
    assert reply.status == 400
    assert reply.json() == {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}


def test_oauth_rejects_wrong_audience(lab: Lab) -> None:
    reply = token_request(lab, assertion(lab, aud="https://oauth2.googleapis.com/token"))
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_grant"
    assert "audience" in reply.json()["error_description"]


def test_oauth_rejects_long_lived_assertion(lab: Lab) -> None:
    reply = token_request(lab, assertion(lab, lifetime=3601))
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_grant"
    assert "short-lived" in reply.json()["error_description"]


def test_oauth_rejects_wrong_grant_type_and_scope(lab: Lab) -> None:
    assert token_request(lab, assertion(lab), grant_type="client_credentials").status == 400
    reply = token_request(lab, assertion(lab, scope="https://www.googleapis.com/auth/userinfo.email"))
    assert reply.status == 400 and reply.json()["error"] == "invalid_scope"


# ---------------------------------------------------------------- FCM send


def test_fcm_send_success_is_recorded(lab: Lab, access_token: str) -> None:
    token = new_token()
    message = {
        "token": token,
        "notification": {"title": "Hi", "body": "There"},
        "data": {"k": "v"},
        "android": {"ttl": "3.5s", "priority": "HIGH"},
    }
    reply = fcm_send(lab, access_token, message)
    assert reply.status == 200, reply.body
    assert reply.json()["name"].startswith("projects/pushgate-lab/messages/")
    ledger = lab.request("GET", f"/ledger?provider=fcm&token={token}").json()
    assert ledger["total"] == 1
    item = ledger["items"][0]
    assert item["provider"] == "fcm" and item["token"] == token
    assert item["message"] == message and item["validate_only"] is False
    assert item["received_at"].endswith("Z")


def test_fcm_rejects_unknown_access_token_and_project(lab: Lab, access_token: str) -> None:
    reply = fcm_send(lab, "ya29.forged", {"token": new_token()})
    assert reply.status == 401
    assert reply.json()["error"]["status"] == "UNAUTHENTICATED"
    assert "details" not in reply.json()["error"]
    reply = fcm_send(lab, access_token, {"token": new_token()}, project="someone-else")
    assert reply.status == 403 and fcm_error(reply)[:3] == (403, "PERMISSION_DENIED", None)


def test_fcm_rejects_reserved_data_key(lab: Lab, access_token: str) -> None:
    token = new_token()
    reply = fcm_send(lab, access_token, {"token": token, "data": {"google.sent_time": "1"}})
    code, status, error_code, message = fcm_error(reply)
    assert (code, status, error_code) == (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
    assert "registration token" not in message
    reply = fcm_send(lab, access_token, {"token": token, "data": {"n": 1}})
    assert fcm_error(reply)[:3] == (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
    reply = fcm_send(lab, access_token, {"token": token, "android": {"ttl": "2419201s"}})
    assert fcm_error(reply)[0] == 400
    reply = fcm_send(lab, access_token, {"token": token, "topic": "news"})
    assert fcm_error(reply)[0] == 400
    assert lab.request("GET", f"/ledger?token={token}").json()["total"] == 0


def test_fcm_rejects_malformed_token(lab: Lab, access_token: str) -> None:
    reply = fcm_send(lab, access_token, {"token": "bad token!"})
    code, status, error_code, message = fcm_error(reply)
    assert (code, status, error_code) == (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
    assert message == "The registration token is not a valid FCM registration token"
    violations = [d for d in reply.json()["error"]["details"] if d["@type"].endswith("BadRequest")]
    assert violations[0]["fieldViolations"][0]["field"] == "message.token"


# ---------------------------------------------------------------- Web Push


def test_webpush_push_is_decrypted_into_ledger(lab: Lab) -> None:
    sub = subscribe(lab)
    assert sub["endpoint"].startswith(f"{lab.services['h2']}/webpush/push/")
    assert len(b64url_decode(sub["keys"]["p256dh"])) == 65 and len(b64url_decode(sub["keys"]["auth"])) == 16
    payload = {"title": "Hi", "body": "There", "n": 3}
    reply = push(lab, sub, json.dumps(payload).encode())
    assert reply.status == 201, reply.body
    assert reply.headers["location"].startswith(lab.services["h2"])
    ledger = lab.request("GET", "/ledger?" + urlencode({"token": sub["endpoint"]})).json()
    assert ledger["total"] == 1
    item = ledger["items"][0]
    assert item["provider"] == "webpush" and item["token"] == sub["endpoint"]
    assert item["payload"] == payload
    assert item["headers"] == {"TTL": "60", "Urgency": "high", "Topic": "news"}
    by_id = lab.request("GET", "/ledger?" + urlencode({"token": item["subscription_id"]})).json()
    assert by_id["total"] == 1


def test_webpush_requires_ttl(lab: Lab) -> None:
    reply = push(lab, subscribe(lab), b"hello", drop=("TTL",))
    assert reply.status == 400 and reply.json()["errno"] == 111


def test_webpush_rejects_bad_vapid_audience(lab: Lab) -> None:
    reply = push(lab, subscribe(lab), b"hello", aud="https://push.example.net")
    assert reply.status == 403


def test_webpush_rejects_key_other_than_application_server_key(lab: Lab) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    other_raw = b64url_encode(other.private_numbers().private_value.to_bytes(32, "big"))
    reply = push(lab, subscribe(lab), b"hello", private_raw=other_raw)
    assert reply.status == 403
    # ...but a subscription made for that key accepts it.
    other_public = other.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    sub = subscribe(lab, b64url_encode(other_public))
    assert push(lab, sub, b"hello", private_raw=other_raw).status == 201


def test_webpush_missing_authorization_and_bad_ciphertext(lab: Lab) -> None:
    sub = subscribe(lab)
    headers = {"TTL": "60", "Content-Encoding": "aes128gcm"}
    assert lab.request("POST", sub["endpoint"], encrypt(sub, b"x"), headers).status == 401
    headers.update(vapid_headers(sub["endpoint"], vapid_private_raw(lab)))
    assert lab.request("POST", sub["endpoint"], encrypt(subscribe(lab), b"x"), headers).status == 400
    assert lab.request("POST", sub["endpoint"], b"x" * 4097, headers).status == 413


def test_webpush_unknown_subscription(lab: Lab) -> None:
    sub = subscribe(lab)
    sub["endpoint"] = f"{lab.services['h2']}/webpush/push/does-not-exist"
    reply = push(lab, sub, b"hello")
    assert reply.status == 404
    assert reply.json()["errno"] == 102 and reply.json()["code"] == 404


# ---------------------------------------------------------------- faults


def test_fault_unregistered_then_success(lab: Lab, access_token: str) -> None:
    token = new_token()
    fault = {"provider": "fcm", "tokens": [token], "error": "unregistered", "times": 2}
    assert lab.request("POST", "/faults", fault).status == 201
    for _ in range(2):
        assert fcm_error(fcm_send(lab, access_token, {"token": token}))[:3] == (
            404,
            "NOT_FOUND",
            "UNREGISTERED",
        )
    assert fcm_send(lab, access_token, {"token": token}).status == 200
    assert lab.request("GET", f"/ledger?token={token}").json()["total"] == 1


def test_fault_429_with_retry_after(lab: Lab, access_token: str) -> None:
    token = new_token()
    lab.request("POST", "/faults", {"provider": "fcm", "tokens": [token], "error": "429", "retry_after": 7})
    reply = fcm_send(lab, access_token, {"token": token})
    assert fcm_error(reply)[:3] == (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
    assert reply.headers["retry-after"] == "7"

    sub = subscribe(lab)
    lab.request(
        "POST",
        "/faults",
        {"provider": "webpush", "tokens": [sub["endpoint"]], "error": "429", "retry_after": 9},
    )
    reply = push(lab, sub, b"hello")
    assert reply.status == 429 and reply.headers["retry-after"] == "9"


def test_fault_webpush_unregistered_by_subscription_id(lab: Lab) -> None:
    sub = subscribe(lab)
    sub_id = sub["endpoint"].rsplit("/", 1)[1]
    lab.request(
        "POST", "/faults", {"provider": "webpush", "tokens": [sub_id], "error": "unregistered", "times": 1}
    )
    reply = push(lab, sub, b"hello")
    assert reply.status == 410 and reply.json()["errno"] == 103
    assert push(lab, sub, b"hello").status == 201


def test_fault_fraction_is_deterministic(lab: Lab, access_token: str) -> None:
    tokens = [new_token() for _ in range(40)]
    lab.request("POST", "/faults", {"provider": "fcm", "fraction": 0.5, "error": "503"})

    def failing() -> set[str]:
        return {t for t in tokens if fcm_send(lab, access_token, {"token": t}).status == 503}

    first = failing()
    assert 5 <= len(first) <= 35
    assert failing() == first


def test_fault_rejects_bad_spec_and_lists(lab: Lab) -> None:
    assert lab.request("POST", "/faults", {"provider": "carrier-pigeon", "error": "500"}).status == 400
    assert lab.request("POST", "/faults", {"provider": "fcm", "fraction": 2.0, "error": "500"}).status == 400
    fault_id = lab.request("POST", "/faults", {"provider": "fcm", "latency_ms": 1}).json()["id"]
    assert [f["id"] for f in lab.request("GET", "/faults").json()["items"]] == [fault_id]


def test_fault_times_count_per_token(lab: Lab, access_token: str) -> None:
    a, b = new_token(), new_token()
    lab.request("POST", "/faults", {"provider": "fcm", "tokens": [a, b], "error": "500", "times": 1})
    assert [fcm_send(lab, access_token, {"token": t}).status for t in (a, b, a, b)] == [500, 500, 200, 200]


def test_webpush_vapid_exp_window_and_spaced_header(lab: Lab) -> None:
    sub = subscribe(lab)
    key = ec.derive_private_key(int.from_bytes(b64url_decode(vapid_private_raw(lab)), "big"), ec.SECP256R1())
    public = (lab.creds_dir / "vapid-public.txt").read_text().strip()

    def signed(exp_in: int) -> dict[str, str]:
        claims = {
            "aud": lab.services["h2"],
            "sub": "https://example.com/ops",
            "exp": int(time.time()) + exp_in,
        }
        token = jwt.encode(claims, key, algorithm="ES256")
        return {"TTL": "0", "Authorization": f"vapid t={token}, k={public}"}

    assert lab.request("POST", sub["endpoint"], b"", signed(600)).status == 201
    assert lab.request("POST", sub["endpoint"], b"", signed(25 * 3600)).status == 403
    assert lab.request("POST", sub["endpoint"], b"", signed(-10)).status == 403


def test_lean_mode_keeps_counters_only(tmp_path: Path) -> None:
    with running_lab(tmp_path, "--lean") as lean:
        sub = subscribe(lean)
        assert push(lean, sub, b"plain text").status == 201
        assert lean.request("GET", "/ledger").json()["items"] == []
        assert lean.request("GET", "/ledger/stats").json() == {**ALL_ZERO, "webpush": 1}


def test_ledger_stats_limit_and_clear(lab: Lab, access_token: str) -> None:
    token = new_token()
    for _ in range(3):
        assert fcm_send(lab, access_token, {"token": token}).status == 200
    limited = lab.request("GET", f"/ledger?token={token}&limit=2").json()
    assert limited["total"] == 3 and len(limited["items"]) == 2
    assert lab.request("GET", "/ledger/stats").json()["fcm"] >= 3
    assert lab.request("DELETE", "/ledger").status == 204
    assert lab.request("GET", "/ledger").json() == {"total": 0, "items": []}
    assert lab.request("GET", "/ledger/stats").json() == ALL_ZERO


# ---------------------------------------------------------------- checks a mutation pass found unchecked


def test_oauth_rejects_assertion_with_another_key_id(lab: Lab) -> None:
    """Google looks the signing key up by ``kid``: a key id that is not the account's fails."""
    sa = lab.service_account
    now = int(time.time())
    claims = {
        "iss": sa["client_email"],
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": sa["token_uri"],
        "iat": now,
        "exp": now + 3600,
    }
    wrong_kid = jwt.encode(claims, sa["private_key"], algorithm="RS256", headers={"kid": "0" * 40})
    reply = token_request(lab, wrong_kid)
    assert reply.status == 400
    assert reply.json() == {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    assert token_request(lab, assertion(lab)).status == 200


def test_webpush_rejects_vapid_signature_by_another_key(lab: Lab) -> None:
    """A well-formed header naming the subscription's key, over a JWT another key signed."""
    sub = subscribe(lab)
    public = (lab.creds_dir / "vapid-public.txt").read_text().strip()
    right = ec.derive_private_key(
        int.from_bytes(b64url_decode(vapid_private_raw(lab)), "big"), ec.SECP256R1()
    )
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(sub["endpoint"]))
    claims = {"aud": origin, "sub": "mailto:ops@example.com", "exp": int(time.time()) + 600}

    def headers(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
        return {
            "TTL": "0",
            "Authorization": f"vapid t={jwt.encode(claims, key, algorithm='ES256')}, k={public}",
        }

    forged = lab.request("POST", sub["endpoint"], b"", headers(ec.generate_private_key(ec.SECP256R1())))
    assert forged.status == 403 and forged.json()["errno"] == 109
    assert lab.request("POST", sub["endpoint"], b"", headers(right)).status == 201


def _form(lab: Lab, path: str, fields: dict[str, str]) -> Reply:
    body = urlencode(fields).encode()
    return lab.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})


def _secrets(lab: Lab) -> dict[str, str]:
    return dict(json.loads((lab.creds_dir / "client-secrets.json").read_text()))


def test_hms_send_refuses_a_token_used_for_another_app_id(lab: Lab) -> None:
    """Push Kit binds an access token to its app: the app id in the send path must be that app."""
    creds = _secrets(lab)
    grant = {"grant_type": "client_credentials", "client_id": creds["hms_app_id"]}
    reply = _form(lab, "/hms/oauth2/v3/token", {**grant, "client_secret": creds["hms_client_secret"]})
    assert reply.status == 200, reply.body
    auth = {"Authorization": f"Bearer {reply.json()['access_token']}"}
    body = {"message": {"token": ["hms-token-0001"], "data": "{}"}}
    other = lab.request("POST", "/hms/v1/100000001/messages:send", body, auth)
    assert other.status == 401 and other.json()["code"] == "80200001"
    own = lab.request("POST", f"/hms/v1/{creds['hms_app_id']}/messages:send", body, auth)
    assert own.status == 200 and own.json()["code"] == "80000000"


def test_wns_token_endpoints_check_their_scope(lab: Lab) -> None:
    """login.live.com grants only ``notify.windows.com``; Entra only ``https://wns.windows.com/.default``."""
    creds = _secrets(lab)
    grant = {
        "grant_type": "client_credentials",
        "client_id": creds["wns_package_sid"],
        "client_secret": creds["wns_client_secret"],
    }
    classic, entra = "/wns/accesstoken.srf", "/wns/common/oauth2/v2.0/token"
    for path, scope in ((classic, "https://wns.windows.com/.default"), (entra, "notify.windows.com")):
        reply = _form(lab, path, {**grant, "scope": scope})
        assert reply.status == 400 and reply.json()["error"] == "invalid_scope", (path, reply.body)
    for path, scope in ((classic, "notify.windows.com"), (entra, "https://wns.windows.com/.default")):
        reply = _form(lab, path, {**grant, "scope": scope})
        assert reply.status == 200 and reply.json()["token_type"] == "bearer", (path, reply.body)


# ---------------------------------------------------------------- how the services are served


def _alpn(lab: Lab, origin: str) -> str | None:
    """The protocol a listener picks when a client offers both, as pushgate's transport does."""
    parts = urlsplit(origin)
    context = ssl.create_default_context(cafile=str(lab.creds_dir / "apns-ca.pem"))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        return tls.selected_alpn_protocol()


def test_services_speak_tls_with_http2_where_the_provider_offers_it(lab: Lab) -> None:
    assert _alpn(lab, lab.services["h2"]) == "h2"  # FCM, its OAuth endpoint, Web Push
    assert _alpn(lab, lab.services["http1"]) == "http/1.1"  # HMS, WNS, MiPush
    # The cleartext control port serves no simulated service.
    assert lab.request("POST", lab.base + "/token").status == 404
    assert lab.request("POST", lab.base + "/mipush/v3/message/regid").status == 404
    # ...and each TLS listener only the services that speak its protocols.
    assert lab.request("POST", lab.services["http1"] + "/token").status == 404
    assert lab.request("POST", lab.services["h2"] + "/mipush/v3/message/regid").status == 404


def test_plain_mode_serves_the_services_in_cleartext_on_the_control_port(tmp_path: Path) -> None:
    with running_lab(tmp_path, "--plain", "--lean") as plain:
        assert plain.services == {"h2": plain.base, "http1": plain.base}
        assert plain.service_account["token_uri"] == f"{plain.base}/token"
        assert "[engine]" not in (tmp_path / "pushgate-lab.toml").read_text()
        assert token_request(plain, assertion(plain)).status == 200
        sub = subscribe(plain)
        assert sub["endpoint"].startswith(f"{plain.base}/webpush/push/")
        assert push(plain, sub, b"hello").status == 201
