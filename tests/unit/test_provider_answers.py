"""Provider answers are decoded with limits, and a failure to handle one is its target's outcome.

Pure: a mock provider transport, no servers. The gateway-level reproductions (a deep answer in
a batch of 21, an endless body) are ``tests/integration/test_hostile_answers.py``.
"""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from support.transport import MockTransport

from pushgate.domain.notification import Notification
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.render import b64url_encode, render_webpush
from pushgate.providers import answers
from pushgate.providers.apns import classify_apns_response
from pushgate.providers.base import Target
from pushgate.providers.fcm import classify_fcm_response
from pushgate.providers.hms import classify_hms_response
from pushgate.providers.mipush import classify_mipush_response
from pushgate.providers.oauth import ClientCredentials, OAuthError
from pushgate.providers.transport import HttpRequest, HttpResponse
from pushgate.providers.webpush import WebPushProvider, classify_webpush_response
from pushgate.providers.wns import classify_wns_response

DEEP = b"[" * 100_000


def test_decode_json_reads_ordinary_answers() -> None:
    assert answers.decode_json(b'{"name": "projects/p/messages/1"}') == {"name": "projects/p/messages/1"}
    assert answers.decode_json('{"msg": "{\\"success\\": 1}"}') == {"msg": '{"success": 1}'}


@pytest.mark.parametrize(
    "body",
    [DEEP, DEEP + b"]" * 100_000, b'{"a":' * 70 + b"1" + b"}" * 70, b"[" * 65 + b"]" * 65],
    ids=["unclosed-100k", "closed-100k", "objects-70", "arrays-65"],
)
def test_decode_json_refuses_deep_nesting(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError, match="nests deeper than 64"):
        answers.decode_json(body)


def test_decode_json_depth_counts_brackets_outside_strings_only() -> None:
    text = "[" * 500 + '\\"' + "{" * 500
    assert answers.decode_json(json.dumps({"reason": text}).encode()) == {"reason": text}
    assert answers.decode_json(b"[" * 64 + b"]" * 64) is not None


def test_decode_json_refuses_oversized_answers_before_decoding() -> None:
    with pytest.raises(msgspec.DecodeError, match="over the 1,048,576-byte limit"):
        answers.decode_json(b'"' + b"x" * answers.MAX_JSON_BYTES + b'"')
    with pytest.raises(msgspec.DecodeError, match="over the 10-byte limit"):
        answers.decode_json(b'{"a": "0123456789"}', max_bytes=10)


@pytest.mark.parametrize("status", [200, 400, 401, 500])
def test_every_classifier_survives_a_deep_answer(status: int) -> None:
    resp = HttpResponse(status, {"content-type": "application/json"}, DEEP)
    results = [
        classify_apns_response(resp, "id-1"),
        classify_fcm_response(resp),
        classify_webpush_response(resp),
        classify_wns_response(resp),
        *classify_hms_response(resp, ["t1", "t2"]),
        *classify_mipush_response(resp, ["r1", "r2"]),
    ]
    assert all(isinstance(r, SendResult) for r in results)
    # The HMS partial-success message is JSON inside JSON: decoded through the same guard.
    inner = json.dumps({"code": "80100000", "msg": "[" * 100_000}).encode()
    [first, _] = classify_hms_response(HttpResponse(200, {}, inner), ["t1", "t2"])
    assert first.outcome is Outcome.SENT


async def test_oauth_token_answer_too_deep_is_an_oauth_error() -> None:
    creds = ClientCredentials(
        MockTransport(lambda req: HttpResponse(200, {}, DEEP)),
        "https://oauth.example.com/token",
        {"grant_type": "client_credentials"},
        name="wns",
    )
    with pytest.raises(OAuthError, match="no access_token"):
        await creds.get()


async def _boom() -> SendResult:
    raise RecursionError("maximum recursion depth exceeded while deserializing an object")


async def test_one_turns_an_exception_into_that_targets_outcome() -> None:
    res = await answers.one("webpush", _boom())
    assert (res.outcome, res.error_code) == (Outcome.PROVIDER_TRANSIENT, "invalid_response")
    assert res.error_message == "pushgate could not handle the webpush answer (RecursionError); retried"


async def test_group_gives_each_token_of_the_request_the_outcome() -> None:
    async def boom() -> list[SendResult]:
        raise ValueError("unexpected shape")

    out = await answers.group("hms", boom(), 3)
    assert [r.error_code for r in out] == ["invalid_response"] * 3


async def test_cancellation_is_not_swallowed() -> None:
    async def slow() -> SendResult:
        await asyncio.sleep(10)
        return SendResult(Outcome.SENT)

    task = asyncio.create_task(answers.one("fcm", slow()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _subscription(endpoint: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    keys = {"p256dh": b64url_encode(public), "auth": b64url_encode(b"S" * 16)}
    return json.dumps({"endpoint": endpoint, "keys": keys}, separators=(",", ":"))


async def test_a_provider_keeps_the_rest_of_its_batch_when_one_target_raises() -> None:
    def handler(req: HttpRequest) -> HttpResponse | Exception:
        if "hostile" in req.url:
            return RuntimeError("a bug while handling this answer")
        return HttpResponse(201, {}, b"")

    vapid = ec.generate_private_key(ec.SECP256R1())
    raw = b64url_encode(vapid.private_numbers().private_value.to_bytes(32, "big"))
    transport = MockTransport(handler)
    provider = await WebPushProvider.create(
        {"vapid_subject": "mailto:ops@example.com", "vapid_private_key": raw}, transport
    )
    targets = [Target(str(i), _subscription(f"https://push.example.net/{i}")) for i in range(3)]
    targets.insert(1, Target("h", _subscription("https://push.example.net/hostile")))
    results = await provider.send_batch(render_webpush(Notification(body="x")), targets)
    assert [r.outcome for r in results] == [
        Outcome.SENT,
        Outcome.PROVIDER_TRANSIENT,
        Outcome.SENT,
        Outcome.SENT,
    ]
    assert results[1].error_code == "invalid_response"


async def test_the_log_names_the_exception_but_never_its_text(caplog: pytest.LogCaptureFixture) -> None:
    async def leaky() -> SendResult:
        raise KeyError("fcm_secret-device-token")

    res = await answers.one("fcm", leaky())
    assert res.error_code == "invalid_response"
    assert "secret-device-token" not in caplog.text + (res.error_message or "")
    assert "KeyError at test_provider_answers.py:" in caplog.text


async def _results(results: list[SendResult]) -> list[SendResult]:
    return results


def test_a_result_list_of_the_wrong_length_fails_the_whole_chunk() -> None:
    """Two answers for three targets would pair answers with the wrong targets."""
    two = [SendResult(Outcome.SENT), SendResult(Outcome.DEVICE_TERMINAL)]
    out = asyncio.run(answers.group("custom", _results(two), 3))
    assert [r.error_code for r in out] == [answers.INVALID_RESPONSE] * 3
    assert {r.outcome for r in out} == {Outcome.PROVIDER_TRANSIENT}


def test_an_error_code_longer_than_its_column_is_cut() -> None:
    long = SendResult(Outcome.PAYLOAD, error_code="X" * 100, error_message="m")
    out = asyncio.run(answers.group("custom", _results([long, SendResult(Outcome.SENT)]), 2))
    assert out[0].error_code == "X" * answers.MAX_CODE
    assert (out[0].outcome, out[0].error_message) == (Outcome.PAYLOAD, "m")
    assert out[1].outcome is Outcome.SENT


def test_a_web_push_reason_that_is_no_code_is_not_used_as_one() -> None:
    """The push service is whatever host the subscription names: {"reason": "A" * 100} used to
    become the delivery's error code, which PostgreSQL refuses (64 characters)."""
    body = json.dumps({"reason": "A" * 100}).encode()
    result = classify_webpush_response(HttpResponse(400, {}, body))
    assert result.error_code == "http_400"
    assert result.error_message == "A" * 100
    short = classify_webpush_response(HttpResponse(400, {}, b'{"reason": "BadJwtToken"}'))
    assert short.error_code == "BadJwtToken"
