"""APNs without a network: rendering, token rules, classification, JWT lifecycle, config, and the
provider's request building and retry rules against a fake transport."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.transport import MockTransport

from pushgate.domain import message_ids
from pushgate.domain.notification import Action, ApnsOverride, Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_apns import (
    RENDERER,
    ApnsRendered,
    actions_category,
    collapse_id,
    normalize_token,
    render,
)
from pushgate.domain.rendering import RenderError, oversize, render_for
from pushgate.lab.apns_credentials import CERT_PASSWORD, generate_apns
from pushgate.providers.apns import (
    JWT_REFRESH_AFTER,
    ApnsProvider,
    JwtSigner,
    classify_apns_response,
)
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.providers.transport import HttpRequest, HttpResponse, TransportError

NOW = 1_800_000_000.0
TOKEN = "ab" * 32


def _payload(r: ApnsRendered) -> dict[str, Any]:
    return dict(json.loads(r.payload))


# =================================================================== rendering

#: (notification fields, override, expected headers subset, expected payload)
CASES: list[tuple[dict[str, Any], ApnsOverride | None, dict[str, str], dict[str, Any]]] = [
    (
        {"title": "T", "body": "B"},
        None,
        {"apns-push-type": "alert", "apns-priority": "10"},
        {"aps": {"alert": {"title": "T", "body": "B"}}},
    ),
    (
        {"title": "T", "sound": "chime.caf"},
        None,
        {},
        {"aps": {"alert": {"title": "T"}, "sound": "chime.caf"}},
    ),
    ({"body": "B", "badge": 0}, None, {}, {"aps": {"alert": {"body": "B"}, "badge": 0}}),
    ({"title": "T", "category": "REPLY"}, None, {}, {"aps": {"alert": {"title": "T"}, "category": "REPLY"}}),
    (
        {"title": "T", "thread_id": "chat-7"},
        None,
        {},
        {"aps": {"alert": {"title": "T"}, "thread-id": "chat-7"}},
    ),
    (
        {"title": "T", "interruption_level": "time-sensitive"},
        None,
        {},
        {"aps": {"alert": {"title": "T"}, "interruption-level": "time-sensitive"}},
    ),
    (
        {"title": "T", "interruption_level": "critical", "sound": "alarm.caf"},
        None,
        {},
        {
            "aps": {
                "alert": {"title": "T"},
                "interruption-level": "critical",
                "sound": {"critical": 1, "name": "alarm.caf", "volume": 1.0},
            }
        },
    ),
    (
        {"title": "T", "image": "https://img.example/a.png"},
        None,
        {},
        {"aps": {"alert": {"title": "T"}, "mutable-content": 1}, "image_url": "https://img.example/a.png"},
    ),
    (
        {"title": "T", "mutable_content": True},
        None,
        {},
        {"aps": {"alert": {"title": "T"}, "mutable-content": 1}},
    ),
    (
        {"title": "T", "data": {"order": "42", "k": "v"}},
        None,
        {},
        {"aps": {"alert": {"title": "T"}}, "order": "42", "k": "v"},
    ),
    (
        {"title": "T", "url": "https://x.example/o/1", "click_action": "OPEN_ORDER"},
        None,
        {},
        {"aps": {"alert": {"title": "T"}}, "url": "https://x.example/o/1", "click_action": "OPEN_ORDER"},
    ),
    ({"title": "T", "priority": "normal"}, None, {"apns-priority": "5"}, {"aps": {"alert": {"title": "T"}}}),
    ({"title": "T", "priority": "high"}, None, {"apns-priority": "10"}, {"aps": {"alert": {"title": "T"}}}),
    (
        {"title": "T", "ttl_seconds": 600},
        None,
        {"apns-expiration": str(int(NOW) + 600)},
        {"aps": {"alert": {"title": "T"}}},
    ),
    ({"title": "T", "ttl_seconds": 0}, None, {"apns-expiration": "0"}, {"aps": {"alert": {"title": "T"}}}),
    (
        {"title": "T", "collapse_key": "score"},
        None,
        {"apns-collapse-id": "score"},
        {"aps": {"alert": {"title": "T"}}},
    ),
    (
        {"content_available": True, "data": {"sync": "1"}},
        None,
        {"apns-push-type": "background", "apns-priority": "5"},
        {"aps": {"content-available": 1}, "sync": "1"},
    ),
    (
        {"background": True, "title": "ignored", "badge": 3},
        None,
        {"apns-push-type": "background", "apns-priority": "5"},
        {"aps": {"content-available": 1}},
    ),
    # data only: APNs would show an empty alert, so it becomes a background push
    (
        {"data": {"k": "v"}},
        None,
        {"apns-push-type": "background"},
        {"aps": {"content-available": 1}, "k": "v"},
    ),
    # Android-only fields do not reach APNs
    (
        {"title": "T", "channel_id": "orders", "channel_importance": "high"},
        None,
        {},
        {"aps": {"alert": {"title": "T"}}},
    ),
    # overrides: headers set over ours (case-insensitive), payload deep-merged, None deletes
    (
        {"title": "T", "body": "B"},
        ApnsOverride(
            headers={"APNS-Priority": "5", "apns-push-type": "voip"},
            payload={"aps": {"alert": {"body": None, "subtitle": "S"}}, "extra": {"n": 1}},
        ),
        {"apns-priority": "5", "apns-push-type": "voip"},
        {"aps": {"alert": {"title": "T", "subtitle": "S"}}, "extra": {"n": 1}},
    ),
]


@pytest.mark.parametrize(("fields", "override", "headers", "payload"), CASES)
def test_render_mapping(
    fields: dict[str, Any], override: ApnsOverride | None, headers: dict[str, str], payload: dict[str, Any]
) -> None:
    r = render(Notification(**fields), ProviderOverrides(apns=override), NOW)
    assert _payload(r) == payload
    for name, value in headers.items():
        assert r.headers[name] == value
    assert all(name == name.lower() for name in r.headers)


def test_actions_become_a_stable_category_and_custom_data() -> None:
    actions = [Action(id="yes", title="Yes"), Action(id="reply", title="Reply", text_input="Say something")]
    r = render(Notification(title="T", actions=actions), ProviderOverrides(), NOW)
    body = _payload(r)
    listed = [{"id": "yes", "title": "Yes"}, {"id": "reply", "title": "Reply", "text_input": "Say something"}]
    assert body["pushgate_actions"] == listed
    assert body["aps"]["category"] == actions_category(listed)
    assert body["aps"]["category"].startswith("pushgate.actions.")
    again = render(Notification(title="Other", actions=actions), ProviderOverrides(), NOW)
    assert _payload(again)["aps"]["category"] == body["aps"]["category"]
    # an explicit category wins; the actions still travel as data
    named = render(Notification(title="T", category="VOTE", actions=actions), ProviderOverrides(), NOW)
    assert _payload(named)["aps"]["category"] == "VOTE"
    assert _payload(named)["pushgate_actions"] == listed


@pytest.mark.parametrize(
    ("push_type", "suffix"),
    [
        ("alert", ""),
        ("background", ""),
        ("voip", ".voip"),
        ("complication", ".complication"),
        ("fileprovider", ".pushkit.fileprovider"),
        ("liveactivity", ".push-type.liveactivity"),
        ("location", ".location-query"),
        ("pushtotalk", ".voip-ptt"),
        ("mdm", ""),
    ],
)
def test_topic_suffix_per_push_type(push_type: str, suffix: str) -> None:
    r = render(
        Notification(title="T"),
        ProviderOverrides(apns=ApnsOverride(headers={"apns-push-type": push_type})),
        NOW,
    )
    assert r.push_type == push_type and r.topic_suffix == suffix


def test_collapse_id_is_hashed_past_64_bytes() -> None:
    assert collapse_id("a" * 64) == "a" * 64
    long_key = "é" * 40  # 80 bytes
    hashed = collapse_id(long_key)
    assert len(hashed.encode()) <= 64 and hashed == collapse_id(long_key)
    r = render(Notification(title="T", collapse_key=long_key), ProviderOverrides(), NOW)
    assert r.headers["apns-collapse-id"] == hashed


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (ApnsOverride(headers={"apns-push-type": "nope"}), "apns-push-type"),
        (ApnsOverride(headers={"apns-priority": "7"}), "apns-priority"),
        (ApnsOverride(headers={"apns-collapse-id": "x" * 65}), "apns-collapse-id"),
    ],
)
def test_render_rejects_what_apns_would_400(override: ApnsOverride, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(Notification(title="T"), ProviderOverrides(apns=override), NOW)


def test_data_key_aps_is_reserved() -> None:
    with pytest.raises(RenderError, match="aps"):
        render(Notification(title="T", data={"aps": "x"}), ProviderOverrides(), NOW)


def test_size_limits_4096_and_5120_for_voip() -> None:
    def sized(n: int, push_type: str | None = None) -> ApnsRendered:
        base = render(Notification(body=""), ProviderOverrides(), NOW)
        filler = "x" * (n - len(base.payload) - len(',"f":""'))
        headers = {"apns-push-type": push_type} if push_type else None
        r = render(
            Notification(body=""),
            ProviderOverrides(apns=ApnsOverride(headers=headers, payload={"f": filler})),
            NOW,
        )
        assert len(r.payload) == n
        return r

    # The longest message ids are counted (docs/receipts.md).
    ids = message_ids.overhead()
    assert oversize(RENDERER, sized(4096 - ids)) is None
    assert oversize(RENDERER, sized(4097 - ids)) == (4097, 4096)
    assert oversize(RENDERER, sized(5120 - ids, "voip")) is None
    assert oversize(RENDERER, sized(5121 - ids, "voip")) == (5121, 5120)


def test_renderer_seam_and_preview() -> None:
    r = render_for(RENDERER, Notification(title="T", ttl_seconds=60), ProviderOverrides(), NOW)
    assert isinstance(r, ApnsRendered)
    assert RENDERER.size(r) == len(r.payload) + message_ids.overhead() and RENDERER.limit(r) == 4096
    preview = RENDERER.preview(r)
    assert preview["url"].endswith("/3/device/<device token>")
    assert preview["headers"]["apns-topic"] == "<bundle id>"
    assert preview["headers"]["apns-expiration"] == str(int(NOW) + 60)
    assert preview["body"] == {"aps": {"alert": {"title": "T"}}}
    stamped = RENDERER.preview(message_ids.Stamped(r, "<publish id>"))["body"]
    assert stamped == {
        "pushgate": {"p": "<publish id>", "d": "<delivery id>"},
        "aps": {"alert": {"title": "T"}},
    }
    # a rendering survives a msgspec round trip (it may sit in a job)
    import msgspec

    assert msgspec.json.decode(msgspec.json.encode(r), type=ApnsRendered) == r


# =================================================================== tokens


def test_normalize_token() -> None:
    assert normalize_token("AB" * 32) == "ab" * 32
    assert normalize_token("<" + "ab" * 16 + " " + "cd" * 16 + ">") == "ab" * 16 + "cd" * 16
    assert normalize_token("0f" * 80) == "0f" * 80  # Live Activity tokens are longer
    for bad, why in [
        ("ab" * 31, "64 to 200"),
        ("zz" * 32, "not hex"),
        ("a" * 65, "even"),
        ("ab" * 101, "64 to 200"),
    ]:
        with pytest.raises(ValueError, match=why):
            normalize_token(bad)


# =================================================================== classification


def _resp(status: int, reason: str | None = None, **extra: Any) -> HttpResponse:
    headers = {k.replace("_", "-"): str(v) for k, v in extra.items() if k != "timestamp"}
    body = {"reason": reason} if reason else None
    if body is not None and "timestamp" in extra:
        body["timestamp"] = extra["timestamp"]
    return HttpResponse(status, headers, json.dumps(body).encode() if body else b"")


CLASSIFY: list[tuple[int, str | None, Outcome]] = [
    (400, "BadDeviceToken", Outcome.DEVICE_TERMINAL),
    (400, "DeviceTokenNotForTopic", Outcome.DEVICE_TERMINAL),
    (410, "Unregistered", Outcome.DEVICE_TERMINAL),
    (410, "ExpiredToken", Outcome.DEVICE_TERMINAL),
    *[
        (400, reason, Outcome.PAYLOAD)
        for reason in (
            "BadCollapseId",
            "BadExpirationDate",
            "BadMessageId",
            "BadPriority",
            "BadTopic",
            "DuplicateHeaders",
            "InvalidPushType",
            "MissingDeviceToken",
            "MissingTopic",
            "PayloadEmpty",
            "TopicDisallowed",
        )
    ],
    (400, "IdleTimeout", Outcome.PROVIDER_TRANSIENT),
    *[
        (403, reason, Outcome.CREDENTIAL)
        for reason in (
            "ExpiredProviderToken",
            "InvalidProviderToken",
            "MissingProviderToken",
            "BadCertificate",
            "BadCertificateEnvironment",
            "Forbidden",
            "UnrelatedKeyIdInToken",
            "BadEnvironmentKeyIdInToken",
            "BadEnvironmentKeyInToken",
        )
    ],
    (404, "BadPath", Outcome.PAYLOAD),
    (405, "MethodNotAllowed", Outcome.PAYLOAD),
    (413, "PayloadTooLarge", Outcome.PAYLOAD),
    (429, "TooManyProviderTokenUpdates", Outcome.CREDENTIAL),
    (429, "TooManyRequests", Outcome.DEVICE_TRANSIENT),
    (500, "InternalServerError", Outcome.PROVIDER_TRANSIENT),
    (503, "ServiceUnavailable", Outcome.PROVIDER_TRANSIENT),
    (503, "Shutdown", Outcome.PROVIDER_TRANSIENT),
    (502, None, Outcome.PROVIDER_TRANSIENT),
]


@pytest.mark.parametrize(("status", "reason", "outcome"), CLASSIFY)
def test_classification(status: int, reason: str | None, outcome: Outcome) -> None:
    result = classify_apns_response(_resp(status, reason))
    assert result.outcome is outcome
    assert result.error_code == (reason or f"http_{status}")


def test_classification_details() -> None:
    ok = classify_apns_response(HttpResponse(200, {"apns-id": "id-1"}, b""), "mine")
    assert (ok.outcome, ok.provider_message_id) == (Outcome.SENT, "id-1")
    assert classify_apns_response(HttpResponse(200, {}, b""), "mine").provider_message_id == "mine"
    gone = classify_apns_response(_resp(410, "Unregistered", timestamp=1_700_000_000_000))
    assert gone.error_message and "since" in gone.error_message
    assert classify_apns_response(_resp(503, "ServiceUnavailable", retry_after=7)).retry_after == 7.0
    assert classify_apns_response(_resp(500, "InternalServerError")).retry_after is None  # APNs sends none
    assert classify_apns_response(HttpResponse(500, {}, b"<html>")).error_code == "http_500"


# =================================================================== JWT


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_jwt_is_es256_with_kid_iss_iat_and_verifies_with_the_public_key() -> None:
    key = _key()
    signer = JwtSigner(key, "KEYID12345", "TEAMID6789", clock=lambda: NOW)
    token = signer.token()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": "KEYID12345", "typ": "JWT"}
    claims = jwt.decode(token, key.public_key(), algorithms=["ES256"], options={"verify_iat": False})
    assert claims == {"iss": "TEAMID6789", "iat": int(NOW)}  # no exp: APNs forbids nothing but ignores it
    # JWS form: the signature is raw R||S, 64 bytes
    sig = token.rsplit(".", 1)[1]
    assert len(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))) == 64


def test_jwt_minted_once_reused_then_reminted_between_20_and_60_minutes() -> None:
    assert 20 * 60 <= JWT_REFRESH_AFTER <= 60 * 60
    clock = [NOW]
    signer = JwtSigner(_key(), "K", "T", clock=lambda: clock[0])
    first = signer.token()
    for step in range(0, int(JWT_REFRESH_AFTER), 60):
        clock[0] = NOW + step
        assert signer.token() == first
    assert signer.minted == 1
    clock[0] = NOW + JWT_REFRESH_AFTER
    second = signer.token()
    assert second != first and signer.minted == 2
    assert jwt.decode(second, options={"verify_signature": False})["iat"] == int(NOW + JWT_REFRESH_AFTER)
    with pytest.raises(ValueError):
        JwtSigner(_key(), "K", "T", refresh_after=10 * 60)


def test_expired_remints_once_for_a_burst() -> None:
    clock = [NOW]
    signer = JwtSigner(_key(), "K", "T", clock=lambda: clock[0])
    stale = signer.token()
    clock[0] += 1
    fresh = signer.expired(stale)
    assert fresh != stale
    assert signer.expired(stale) == fresh  # a second answer for the old JWT does not mint again
    assert signer.minted == 2


# =================================================================== provider against the mock transport


def _accept(req: HttpRequest) -> HttpResponse:
    """APNs' answer to a good request: 200 with the notification's ``apns-id``."""
    return HttpResponse(200, {"apns-id": req.headers["apns-id"]}, b"")


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _settings(**extra: Any) -> dict[str, Any]:
    return {
        "key": _pem(_key()),
        "key_id": "KEYID12345",
        "team_id": "TEAMID6789",
        "bundle_id": "com.example.app",
    } | extra


async def test_request_building_and_environment_routing() -> None:
    fake = MockTransport(_accept)
    provider = await ApnsProvider.create(_settings(sandbox_base_url="http://127.0.0.1:1"), fake)
    r = render(
        Notification(title="T", collapse_key="c"),
        ProviderOverrides(apns=ApnsOverride(headers={"apns-push-type": "voip"})),
        NOW,
    )
    results = await provider.send_batch(r, [Target("a", TOKEN), Target("b", "cd" * 32, "sandbox")])
    assert [x.outcome for x in results] == [Outcome.SENT, Outcome.SENT]
    prod, sandbox = fake.requests
    assert prod.url == f"https://api.push.apple.com/3/device/{TOKEN}"
    assert sandbox.url == "http://127.0.0.1:1/3/device/" + "cd" * 32
    h = prod.headers
    assert h["apns-topic"] == "com.example.app.voip"
    assert h["apns-push-type"] == "voip" and h["apns-collapse-id"] == "c"
    assert str(uuid.UUID(h["apns-id"])) == h["apns-id"]  # lower-case canonical UUID
    assert results[0].provider_message_id == h["apns-id"]
    assert h["authorization"].startswith("bearer ")
    assert prod.headers["authorization"] == sandbox.headers["authorization"]  # one JWT for all
    assert prod.headers["apns-id"] != sandbox.headers["apns-id"]
    assert json.loads(prod.body) == {"aps": {"alert": {"title": "T"}}}


async def test_topic_override_wins() -> None:
    fake = MockTransport(_accept)
    provider = await ApnsProvider.create(_settings(), fake)
    r = render(
        Notification(title="T"),
        ProviderOverrides(apns=ApnsOverride(headers={"apns-topic": "com.other"})),
        NOW,
    )
    await provider.send_batch(r, [Target("a", TOKEN)])
    assert fake.requests[0].headers["apns-topic"] == "com.other"


async def test_expired_provider_token_is_reminted_once_and_retried() -> None:
    seen: list[str] = []

    def script(req: HttpRequest) -> HttpResponse:
        seen.append(req.headers["authorization"])
        if len(seen) == 1:
            return _resp(403, "ExpiredProviderToken")
        return HttpResponse(200, {"apns-id": req.headers["apns-id"]}, b"")

    fake = MockTransport(script)
    provider = await ApnsProvider.create(_settings(), fake)
    assert provider.signer is not None
    clock = [time.time()]
    provider.signer.clock = lambda: clock[0]
    clock[0] += 1
    [result] = await provider.send_batch(
        render(Notification(title="T"), ProviderOverrides(), NOW), [Target("a", TOKEN)]
    )
    assert result.outcome is Outcome.SENT
    assert len(seen) == 2 and seen[0] != seen[1]
    assert fake.requests[0].headers["apns-id"] == fake.requests[1].headers["apns-id"]  # same notification
    assert provider.signer.minted == 2


async def test_expired_twice_is_a_credential_failure_without_a_third_try() -> None:
    fake = MockTransport(lambda req: _resp(403, "ExpiredProviderToken"))
    provider = await ApnsProvider.create(_settings(), fake)
    [result] = await provider.send_batch(
        render(Notification(title="T"), ProviderOverrides(), NOW), [Target("a", TOKEN)]
    )
    assert (result.outcome, result.error_code) == (Outcome.CREDENTIAL, "ExpiredProviderToken")
    assert len(fake.requests) == 2


async def test_network_error_is_retryable() -> None:
    def boom(req: HttpRequest) -> HttpResponse:
        raise TransportError("connection reset")

    provider = await ApnsProvider.create(_settings(), MockTransport(boom))
    [result] = await provider.send_batch(
        render(Notification(title="T"), ProviderOverrides(), NOW), [Target("a", TOKEN)]
    )
    assert (result.outcome, result.error_code) == (Outcome.PROVIDER_TRANSIENT, "network")


async def test_one_stream_until_authenticated_then_concurrency_bounded() -> None:
    fake = MockTransport(_accept, delay=0.005)
    provider = await ApnsProvider.create(_settings(concurrency=8), fake)
    targets = [Target(str(i), f"{i:064x}") for i in range(60)]
    results = await provider.send_batch(render(Notification(title="T"), ProviderOverrides(), NOW), targets)
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert fake.in_flight_log[0] == 1
    assert fake.max_in_flight == 8


async def test_credential_failures_keep_one_stream() -> None:
    fake = MockTransport(lambda req: _resp(403, "InvalidProviderToken"), delay=0.002)
    provider = await ApnsProvider.create(_settings(), fake)
    targets = [Target(str(i), f"{i:064x}") for i in range(10)]
    results = await provider.send_batch(render(Notification(title="T"), ProviderOverrides(), NOW), targets)
    assert {(r.outcome, r.error_code) for r in results} == {(Outcome.CREDENTIAL, "InvalidProviderToken")}
    assert fake.max_in_flight == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "apns.key_file: required"),
        (
            {"key": "not a key", "key_id": "K", "team_id": "T", "bundle_id": "b"},
            "apns.key: not a PEM private key",
        ),
        ({"key_file": "/nonexistent/AuthKey.p8"}, "apns.key_file: file not found"),
        (_settings(key_id=None), "apns.key_id: required with key"),
        (_settings(team_id=None), "apns.team_id: required with key"),
        (_settings(bundle_id=None), "apns.bundle_id: required"),
        (_settings(environment="staging"), "apns.environment"),
        (_settings(base_url="ftp://x"), "apns.base_url"),
        (_settings(concurrency=0), "apns.concurrency"),
        (_settings(certificate_file="/x.p12"), "not both"),
        ({"certificate_p12_base64": "!!!"}, "apns.certificate_p12_base64: not valid base64"),
    ],
)
async def test_config_errors_name_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message.replace(".", r"\.")):
        await ApnsProvider.create(
            {k: v for k, v in settings.items() if v is not None}, MockTransport(_accept)
        )


async def test_rsa_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ProviderConfigError, match="P-256"):
        await ApnsProvider.create(_settings(key=pem.decode()), MockTransport(_accept))


# =================================================================== certificate auth


async def test_certificate_auth_from_p12_sends_no_authorization(tmp_path: Any) -> None:
    lab = generate_apns("com.example.certapp")
    p12 = tmp_path / "apns.p12"
    p12.write_bytes(lab.client_p12())
    fake = MockTransport(_accept)
    provider = await ApnsProvider.create(
        {"certificate_file": str(p12), "certificate_password": CERT_PASSWORD}, fake
    )
    assert provider.bundle_id == "com.example.certapp"  # from the certificate's subject UID
    assert provider.identity is not None and b"PRIVATE KEY" in provider.identity.pem
    assert provider.certificate_expires_at == lab.client_cert.not_valid_after_utc.timestamp()
    await provider.send_batch(render(Notification(title="T"), ProviderOverrides(), NOW), [Target("a", TOKEN)])
    assert "authorization" not in fake.requests[0].headers
    assert fake.requests[0].headers["apns-topic"] == "com.example.certapp"

    inline = await ApnsProvider.create(
        {
            "certificate_p12_base64": base64.b64encode(lab.client_p12()).decode(),
            "certificate_password": CERT_PASSWORD,
            "bundle_id": "com.example.explicit",
        },
        MockTransport(_accept),
    )
    assert inline.bundle_id == "com.example.explicit"


async def test_certificate_auth_from_pem_pair(tmp_path: Any) -> None:
    lab = generate_apns()
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_bytes(lab.client_cert.public_bytes(serialization.Encoding.PEM))
    key.write_text(_pem(lab.client_key))
    provider = await ApnsProvider.create(
        {"certificate_file": str(cert), "certificate_key_file": str(key)}, MockTransport(_accept)
    )
    assert provider.bundle_id == lab.bundle_id
    with pytest.raises(ProviderConfigError, match=r"apns\.certificate_file: no unencrypted PEM private key"):
        await ApnsProvider.create({"certificate_file": str(cert)}, MockTransport(_accept))


async def test_wrong_p12_password_names_the_key(tmp_path: Any) -> None:
    p12 = tmp_path / "apns.p12"
    p12.write_bytes(generate_apns().client_p12())
    with pytest.raises(ProviderConfigError, match=r"apns\.certificate_file: cannot open the \.p12"):
        await ApnsProvider.create(
            {"certificate_file": str(p12), "certificate_password": "wrong"}, MockTransport(_accept)
        )
