"""Providers over the real HTTP stack, against the provider lab.

The lab runs as a subprocess (``python -m pushgate.lab``) speaking the providers' wire
protocols: it verifies the OAuth assertion, bearer tokens, VAPID and decrypts every Web Push
body, then records what arrived in its ledger. Nothing here is faked on pushgate's side:
requests go through :class:`PyreqwestTransport`, built as production builds it, trusting the
lab's CA through ``engine.ca_file``. The lab serves its simulators over TLS, with HTTP/2 where
the real service offers it, and the ledger records how each request arrived, so these tests
prove the production transport ran.
"""

from __future__ import annotations

import json
import secrets
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from support.lab import free_port, lab_outbound, lab_process

from pushgate.domain.notification import FcmOverride, Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render import b64url_encode, render_fcm, render_webpush, webpush_token_string
from pushgate.domain.render_hms import render as render_hms
from pushgate.domain.render_mipush import render as render_mipush
from pushgate.domain.render_wns import render as render_wns
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.providers.fcm import FcmProvider
from pushgate.providers.hms import HmsProvider
from pushgate.providers.http import PyreqwestTransport, create_transport
from pushgate.providers.mipush import MiPushProvider
from pushgate.providers.transport import HttpRequest
from pushgate.providers.webpush import WebPushProvider
from pushgate.providers.wns import WnsProvider


class Lab:
    def __init__(self, base_url: str, config: dict[str, Any]) -> None:
        self.base_url = base_url
        self.config = config
        self.ca_file = str(config["engine"]["ca_file"])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    creds = tmp_path_factory.mktemp("lab-creds")
    with lab_process(creds) as base_url:
        yield Lab(base_url, tomllib.loads((creds / "pushgate-lab.toml").read_text()))


@pytest.fixture
async def transport(lab: Lab) -> AsyncIterator[PyreqwestTransport]:
    t = create_transport(timeout=10.0, ca_file=lab.ca_file, outbound=lab_outbound())
    assert isinstance(t, PyreqwestTransport)
    yield t
    await t.aclose()


async def _call(t: PyreqwestTransport, method: str, url: str, doc: Any = None) -> Any:
    body = json.dumps(doc).encode() if doc is not None else b""
    headers = {"Content-Type": "application/json"} if doc is not None else {}
    resp = await t.request(HttpRequest(method, url, headers, body))
    assert resp.status < 300, (resp.status, resp.body)
    return json.loads(resp.body) if resp.body else None


async def _ledger(t: PyreqwestTransport, lab: Lab, provider: str, token: str) -> dict[str, Any]:
    result: dict[str, Any] = await _call(
        t, "GET", f"{lab.base_url}/ledger?{urlencode({'provider': provider, 'token': token})}"
    )
    return result


def _fcm_token() -> str:
    return "lab-" + secrets.token_urlsafe(24)


async def test_fcm_through_lab(lab: Lab, transport: PyreqwestTransport) -> None:
    provider = await FcmProvider.create(lab.config["fcm"], transport)
    tokens = [_fcm_token() for _ in range(3)]
    gone = tokens[2]
    await _call(
        transport,
        "POST",
        f"{lab.base_url}/faults",
        {"provider": "fcm", "tokens": [gone], "error": "unregistered"},
    )
    n = Notification(title="Hello", body="from pushgate", data={"k": "v"}, priority="high", ttl_seconds=600)
    rendered = render_fcm(n, FcmOverride(message={"android": {"collapse_key": "ck"}}))
    results = await provider.send_batch(rendered, [Target(f"r{i}", tok) for i, tok in enumerate(tokens)])

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT, Outcome.DEVICE_TERMINAL]
    assert results[0].provider_message_id and results[0].provider_message_id.startswith(
        "projects/pushgate-lab/messages/"
    )
    assert results[2].error_code == "UNREGISTERED"

    ledger = await _ledger(transport, lab, "fcm", tokens[0])
    assert ledger["total"] == 1
    message = ledger["items"][0]["message"]
    assert message["token"] == tokens[0]
    assert message["notification"] == {"title": "Hello", "body": "from pushgate"}
    assert message["data"] == {"k": "v"}
    assert message["android"]["priority"] == "HIGH"
    assert message["android"]["collapse_key"] == "ck"
    assert ledger["items"][0]["transport"] == "h2"  # HTTP/2 over TLS, as with fcm.googleapis.com
    assert (await _ledger(transport, lab, "fcm", gone))["total"] == 0


async def test_fcm_lab_classifications(lab: Lab, transport: PyreqwestTransport) -> None:
    provider = await FcmProvider.create(lab.config["fcm"], transport)
    quota, mismatch = _fcm_token(), _fcm_token()
    base = f"{lab.base_url}/faults"
    await _call(
        transport, "POST", base, {"provider": "fcm", "tokens": [quota], "error": "quota", "retry_after": 5}
    )
    await _call(
        transport, "POST", base, {"provider": "fcm", "tokens": [mismatch], "error": "sender_mismatch"}
    )
    bad_data = render_fcm(Notification(data={"google.x": "1"}))
    [payload] = await provider.send_batch(bad_data, [Target("p", _fcm_token())])
    assert payload.outcome is Outcome.PAYLOAD and payload.error_code == "INVALID_ARGUMENT"

    results = await provider.send_batch(
        render_fcm(Notification(body="x")),
        [Target("q", quota), Target("m", mismatch), Target("b", "bad")],
    )
    assert results[0].outcome is Outcome.QUOTA
    assert results[0].error_code == "QUOTA_EXCEEDED" and results[0].retry_after == 60.0
    assert results[1].outcome is Outcome.DEVICE_TERMINAL and results[1].error_code == "SENDER_ID_MISMATCH"
    assert results[2].outcome is Outcome.DEVICE_TERMINAL and results[2].error_code == "INVALID_ARGUMENT"


async def test_fcm_lab_refreshes_rejected_access_token(lab: Lab, transport: PyreqwestTransport) -> None:
    provider = await FcmProvider.create(lab.config["fcm"], transport)
    tok = _fcm_token()
    [first] = await provider.send_batch({}, [Target("a", tok)])
    assert first.outcome is Outcome.SENT
    provider.oauth._token = "ya29.revoked"  # what the lab sees after an early expiry
    [second] = await provider.send_batch({"data": {"n": "2"}}, [Target("a", tok)])
    assert second.outcome is Outcome.SENT
    assert provider.oauth._token != "ya29.revoked"
    assert (await _ledger(transport, lab, "fcm", tok))["total"] == 2


async def test_webpush_through_lab(lab: Lab, transport: PyreqwestTransport) -> None:
    provider = await WebPushProvider.create(lab.config["webpush"], transport)
    subs = [await _call(transport, "POST", f"{lab.base_url}/webpush/subscriptions", {}) for _ in range(3)]
    tokens = [webpush_token_string(s) for s in subs]
    # the browser unsubscribes the last one → 410
    last_id = subs[2]["endpoint"].rsplit("/", 1)[-1]
    await _call(transport, "DELETE", f"{lab.base_url}/webpush/subscriptions/{last_id}")
    await _call(
        transport,
        "POST",
        f"{lab.base_url}/faults",
        {"provider": "webpush", "tokens": [subs[1]["endpoint"]], "error": "429", "retry_after": 42},
    )
    n = Notification(
        title="Hi", body="there ☃", data={"k": "v"}, ttl_seconds=300, priority="high", collapse_key="c1"
    )
    rendered = render_webpush(n)
    results = await provider.send_batch(rendered, [Target(f"r{i}", tok) for i, tok in enumerate(tokens)])

    assert results[0].outcome is Outcome.SENT and results[0].provider_message_id
    assert results[1].outcome is Outcome.QUOTA and results[1].retry_after == 42.0
    assert results[2].outcome is Outcome.DEVICE_TERMINAL and results[2].error_code == "http_410"

    ledger = await _ledger(transport, lab, "webpush", subs[0]["endpoint"])
    assert ledger["total"] == 1
    item = ledger["items"][0]
    assert item["payload"] == json.loads(rendered.payload)
    assert item["payload"]["body"] == "there ☃"
    assert item["headers"] == {"TTL": "300", "Urgency": "high", "Topic": "c1"}
    assert subs[0]["endpoint"].startswith("https://") and item["transport"] == "h2"
    assert (await _ledger(transport, lab, "webpush", subs[1]["endpoint"]))["total"] == 0


async def test_webpush_lab_rejects_other_vapid_key(lab: Lab, transport: PyreqwestTransport) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    settings = {
        "vapid_subject": "mailto:ops@example.com",
        "vapid_private_key": other.private_numbers().private_value.to_bytes(32, "big").hex(),
    }
    # hex is not a supported form: the config error names the key
    with pytest.raises(ProviderConfigError, match=r"webpush\.vapid_private_key"):
        await WebPushProvider.create(settings, transport)
    settings["vapid_private_key"] = b64url_encode(other.private_numbers().private_value.to_bytes(32, "big"))
    provider = await WebPushProvider.create(settings, transport)
    sub = await _call(transport, "POST", f"{lab.base_url}/webpush/subscriptions", {})
    [res] = await provider.send_batch(
        render_webpush(Notification(body="x")), [Target("r", webpush_token_string(sub))]
    )
    assert res.outcome is Outcome.CREDENTIAL and res.error_code == "http_403"


async def test_network_error_is_retryable(transport: PyreqwestTransport) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    provider = await WebPushProvider.create(
        {
            "vapid_subject": "mailto:ops@example.com",
            "vapid_private_key": b64url_encode(key.private_numbers().private_value.to_bytes(32, "big")),
        },
        transport,
    )
    browser = ec.generate_private_key(ec.SECP256R1())
    sub = {
        "endpoint": f"http://127.0.0.1:{free_port()}/push/x",
        "keys": {
            "p256dh": b64url_encode(
                browser.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
            ),
            "auth": b64url_encode(b"a" * 16),
        },
    }
    [res] = await provider.send_batch(
        render_webpush(Notification(body="x")), [Target("r", webpush_token_string(sub))]
    )
    assert res.outcome is Outcome.PROVIDER_TRANSIENT and res.error_code == "network"
    assert res.error_message and "connect" in res.error_message.lower()
    assert "/push/x" not in res.error_message  # the endpoint path is the device's secret


def _account_with_unknown_key(lab: Lab, directory: Path) -> str:
    """The lab's service account file, but with a private key the lab never issued."""
    account = json.loads(Path(lab.config["fcm"]["service_account_file"]).read_text())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account["private_key"] = other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    wrong = directory / "wrong-key.json"
    wrong.write_text(json.dumps(account))
    return str(wrong)


async def test_fcm_wrong_key_is_refused_by_the_lab_oauth_server(
    lab: Lab, transport: PyreqwestTransport, tmp_path: Path
) -> None:
    """A service account whose key the lab does not know: ``invalid_grant`` → a credential error."""
    wrong = _account_with_unknown_key(lab, tmp_path)
    provider = await FcmProvider.create({**lab.config["fcm"], "service_account_file": wrong}, transport)
    tok = _fcm_token()
    [res] = await provider.send_batch(render_fcm(Notification(body="x")), [Target("r", tok)])
    assert res.outcome is Outcome.CREDENTIAL
    assert res.error_message and "invalid_grant: Invalid JWT Signature." in res.error_message
    assert (await _ledger(transport, lab, "fcm", tok))["total"] == 0
    right = await FcmProvider.create(lab.config["fcm"], transport)
    [ok] = await right.send_batch(render_fcm(Notification(body="x")), [Target("r", tok)])
    assert ok.outcome is Outcome.SENT


async def test_http1_services_are_served_over_tls(lab: Lab, transport: PyreqwestTransport) -> None:
    """HMS, WNS and MiPush offer no HTTP/2: pushgate reaches them over TLS with HTTP/1.1."""
    n = Notification(title="T", body="B", data={"k": "v"})
    hms = await HmsProvider.create(lab.config["hms"], transport)
    hms_token = "IQAAAACy0" + secrets.token_urlsafe(40)
    [sent] = await hms.send_batch(render_hms(n, ProviderOverrides(), 0.0), [Target("h", hms_token)])
    assert sent.outcome is Outcome.SENT
    wns = await WnsProvider.create(lab.config["wns"], transport)
    channel = await _call(transport, "POST", f"{lab.base_url}/wns/channels", {})
    assert channel["channel_uri"].startswith("https://")
    [sent] = await wns.send_batch(
        render_wns(n, ProviderOverrides(), 0.0), [Target("w", channel["channel_uri"])]
    )
    assert sent.outcome is Outcome.SENT
    mipush = await MiPushProvider.create(lab.config["mipush"], transport)
    regid = "mi-" + secrets.token_urlsafe(20)
    [sent] = await mipush.send_batch(render_mipush(n, ProviderOverrides(), 0.0), [Target("m", regid)])
    assert sent.outcome is Outcome.SENT
    for provider, token in (("hms", hms_token), ("wns", channel["channel_uri"]), ("mipush", regid)):
        [item] = (await _ledger(transport, lab, provider, token))["items"]
        assert item["transport"] == "http/1.1+tls", provider
