"""Huawei Push Kit: rendering, classification, OAuth, batching, and delivery through the lab.

Unit tests drive :class:`HmsProvider` over the mock transport; the integration tests run the
real gateway against the lab's Push Kit simulator (``pushgate/lab/hms.py``), which checks the
OAuth token, the message shape and the size the way Push Kit does.
The tests against the lab and through the gateway are in ``test_hms_lab.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from support.transport import MockTransport

from pushgate.domain.notification import Action, HmsOverride, Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_hms import RENDERER, hms_collapse_key, normalize_token, render
from pushgate.domain.rendering import oversize
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.providers.hms import HmsProvider, classify_hms_response
from pushgate.providers.transport import HttpRequest, HttpResponse, TransportError

NO = ProviderOverrides()
CLICK = "android.notification.click_action"


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return KeyError(path)
        doc = doc[part]
    return doc


# =================================================================== rendering

RENDER_TABLE: list[tuple[dict[str, Any], str, Any]] = [
    ({"title": "T", "body": "B"}, "android.notification.title", "T"),
    ({"title": "T", "body": "B"}, "android.notification.body", "B"),
    ({"title": "T"}, "android.notification.body", ""),
    ({"title": "T"}, CLICK, {"type": 3}),
    ({"title": "T", "data": {"k": "v", "n": "1"}}, "data", '{"k":"v","n":"1"}'),
    ({"title": "T", "image": "https://x/i.png"}, "android.notification.image", "https://x/i.png"),
    ({"title": "T", "sound": "ding"}, "android.notification.sound", "ding"),
    ({"title": "T", "sound": "ding"}, "android.notification.default_sound", False),
    ({"title": "T", "sound": "default"}, "android.notification.default_sound", True),
    ({"title": "T", "badge": 7}, "android.notification.badge", {"set_num": 7}),
    ({"title": "T", "badge": 500}, "android.notification.badge", {"set_num": 99}),
    ({"title": "T", "channel_id": "orders"}, "android.notification.channel_id", "orders"),
    ({"title": "T", "channel_importance": "low"}, "android.notification.importance", "LOW"),
    ({"title": "T", "channel_importance": "max"}, "android.notification.importance", "NORMAL"),
    ({"title": "T", "url": "https://e.x/a"}, CLICK, {"type": 2, "url": "https://e.x/a"}),
    ({"title": "T", "click_action": "OPEN"}, CLICK, {"type": 1, "action": "OPEN"}),
    (
        {"title": "T", "click_action": "intent://o/1#Intent;scheme=app;end"},
        CLICK,
        {"type": 1, "intent": "intent://o/1#Intent;scheme=app;end"},
    ),
    ({"title": "T", "collapse_key": "42"}, "android.collapse_key", 42),
    ({"title": "T", "collapse_key": "-1"}, "android.collapse_key", -1),
    ({"title": "T", "collapse_key": "orders"}, "android.collapse_key", hms_collapse_key("orders")),
    ({"title": "T", "collapse_key": "orders"}, "android.notification.tag", "orders"),
    ({"title": "T", "thread_id": "chat-1"}, "android.notification.group", "chat-1"),
    ({"title": "T", "ttl_seconds": 60}, "android.ttl", "60s"),
    ({"title": "T", "ttl_seconds": 2_000_000}, "android.ttl", "1296000s"),
    ({"title": "T", "priority": "high"}, "android.urgency", "HIGH"),
    ({"title": "T", "priority": "normal"}, "android.urgency", "NORMAL"),
    ({"content_available": True, "data": {"k": "v"}}, "data", '{"k":"v"}'),
    ({"background": True}, "data", "{}"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "path", "expected"), RENDER_TABLE)
def test_render_field(fields: dict[str, Any], path: str, expected: Any) -> None:
    msg = render(Notification(**fields), NO, 0.0)
    assert _get(msg, path) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"content_available": True, "title": "T", "body": "B", "data": {"k": "v"}},
        {"data": {"k": "v"}},
    ],
)
def test_silent_and_data_only_are_data_messages(fields: dict[str, Any]) -> None:
    msg = render(Notification(**fields), NO, 0.0)
    assert "notification" not in msg.get("android", {})
    assert msg["data"] == '{"k":"v"}'


def test_actions_become_at_most_three_buttons() -> None:
    actions = [Action(id=f"a{i}", title=f"Button {i}", text_input="x" if i == 0 else None) for i in range(5)]
    msg = render(Notification(title="T", actions=actions), NO, 0.0)
    buttons = msg["android"]["notification"]["buttons"]
    assert len(buttons) == 3
    assert buttons[0] == {"name": "Button 0", "action_type": 0, "data": '{"action_id":"a0"}'}


def test_unmapped_fields_leave_no_trace() -> None:
    plain = render(Notification(title="T"), NO, 0.0)
    extra = render(
        Notification(title="T", category="c", interruption_level="critical", mutable_content=True), NO, 0.0
    )
    assert plain == extra


def test_override_deep_merges_and_none_deletes() -> None:
    o = ProviderOverrides(
        hms=HmsOverride(
            message={"android": {"urgency": "HIGH", "notification": {"tag": None, "color": "#FF0000"}}}
        )
    )
    msg = render(Notification(title="T", collapse_key="k"), o, 0.0)
    assert msg["android"]["urgency"] == "HIGH"
    assert msg["android"]["notification"]["color"] == "#FF0000"
    assert "tag" not in msg["android"]["notification"]
    assert msg["android"]["notification"]["title"] == "T"


def test_size_limit_excludes_tokens() -> None:
    fits = render(Notification(title="T", body="x" * 3800), NO, 0.0)
    assert oversize(RENDERER, fits) is None
    assert RENDERER.size({**fits, "token": ["t" * 4000] * 10}) == RENDERER.size(fits)
    big = render(Notification(title="T", body="x" * 4096), NO, 0.0)
    over = oversize(RENDERER, big)
    assert over is not None and over[1] == 4096 and over[0] > 4096
    preview = RENDERER.preview(fits)
    assert preview["body"]["message"]["token"] == ["<up to 1000 device tokens>"]


def test_collapse_key_hash_is_stable_and_in_range() -> None:
    keys = [f"key-{i}" for i in range(500)]
    values = [hms_collapse_key(k) for k in keys]
    assert all(1 <= v <= 100 for v in values)
    assert values == [hms_collapse_key(k) for k in keys]
    assert hms_collapse_key("101") != 101 and hms_collapse_key("007") != 7


def test_normalize_token() -> None:
    assert normalize_token("  abc  ", allow_lab=False) == "abc"
    for bad, words in (("", "empty"), ("a b", "whitespace"), ("x" * 4097, "4096")):
        with pytest.raises(ValueError, match=words):
            normalize_token(bad, allow_lab=True)


# =================================================================== provider (mock transport)

TOKEN_URL = "https://oauth.hms.test/oauth2/v3/token"
BASE_URL = "https://push.hms.test"
APP_ID = "101234567"
SEND_URL = f"{BASE_URL}/v1/{APP_ID}/messages:send"


def _resp(status: int, doc: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return HttpResponse(status, {"content-type": "application/json", **(headers or {})}, body)


def _code(code: str, msg: str = "x", status: int = 200, **extra: Any) -> HttpResponse:
    return _resp(status, {"code": code, "msg": msg, "requestId": "req-1", **extra})


class Script:
    """HMS's token endpoint plus a scripted send answer: a ``MockTransport`` handler.

    ``self.transport`` is the transport to give the provider; it records every request and the
    concurrency, while this handler checks the protocol and keeps what HMS was sent.
    """

    def __init__(self, send: Callable[[HttpRequest, dict[str, Any]], HttpResponse | Exception]) -> None:
        self.send = send
        self.sends: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.oauth_calls = 0
        self.oauth_answer: HttpResponse | Exception | None = None
        self.expires_in = 3600
        self.transport = MockTransport(self)

    def __call__(self, req: HttpRequest) -> HttpResponse | Exception:
        if req.url == TOKEN_URL:
            self.oauth_calls += 1
            form = parse_qs(req.body.decode())
            assert form == {
                "grant_type": ["client_credentials"],
                "client_id": [APP_ID],
                "client_secret": ["s3cret"],
            }
            return self.oauth_answer or _resp(
                200, {"access_token": f"tok{self.oauth_calls}", "expires_in": self.expires_in}
            )
        assert req.url == SEND_URL
        assert req.headers["Content-Type"] == "application/json"
        self.auth_headers.append(req.headers["Authorization"])
        doc = json.loads(req.body)
        self.sends.append(doc)
        return self.send(req, doc)


def _ok(_req: HttpRequest, _doc: dict[str, Any]) -> HttpResponse:
    return _code("80000000", "Success")


async def _provider(send: Any = _ok, **settings: Any) -> tuple[HmsProvider, Script]:
    script = Script(send)
    provider = await HmsProvider.create(
        {
            "app_id": APP_ID,
            "client_secret": "s3cret",
            "base_url": BASE_URL,
            "token_url": TOKEN_URL,
            **settings,
        },
        script.transport,
    )
    return provider, script


def _targets(n: int, prefix: str = "tok") -> list[Target]:
    return [Target(f"dev_{i}", f"{prefix}{i}") for i in range(n)]


MESSAGE = {"android": {"notification": {"title": "T", "body": "B", "click_action": {"type": 3}}}}


async def test_batches_split_into_1000_token_requests_in_order() -> None:
    provider, script = await _provider()
    targets = _targets(2500)
    results = await provider.send_batch(MESSAGE, targets)
    assert [len(s["message"]["token"]) for s in script.sends] == [1000, 1000, 500]
    sent_tokens = [t for s in script.sends for t in s["message"]["token"]]
    assert sorted(sent_tokens) == sorted(t.token for t in targets)
    assert all(
        s["validate_only"] is False and s["message"]["android"] == MESSAGE["android"] for s in script.sends
    )
    assert [r.outcome for r in results] == [Outcome.SENT] * 2500
    assert results[0].provider_message_id == "req-1"
    assert script.auth_headers == ["Bearer tok1"] * 3
    assert script.oauth_calls == 1


async def test_topics_and_conditions_are_one_request_each() -> None:
    provider, script = await _provider()
    targets = [
        Target("a", "tok-a"),
        Target("t", "topic:news"),
        Target("b", "tok-b"),
        Target("c", "condition:'a' in topics && 'b' in topics"),
    ]
    results = await provider.send_batch(MESSAGE, targets)
    assert [r.outcome for r in results] == [Outcome.SENT] * 4
    shapes = sorted(
        (k, json.dumps(s["message"][k]))
        for s in script.sends
        for k in ("token", "topic", "condition")
        if k in s["message"]
    )
    assert shapes == [
        ("condition", json.dumps("'a' in topics && 'b' in topics")),
        ("token", json.dumps(["tok-a", "tok-b"])),
        ("topic", json.dumps("news")),
    ]


async def test_partial_success_marks_only_illegal_tokens() -> None:
    def partial(_req: HttpRequest, doc: dict[str, Any]) -> HttpResponse:
        illegal = [t for t in doc["message"]["token"] if t.endswith(("3", "7"))]
        msg = json.dumps({"success": 10 - len(illegal), "failure": len(illegal), "illegal_tokens": illegal})
        return _code("80100000", msg)

    provider, _ = await _provider(partial)
    results = await provider.send_batch(MESSAGE, _targets(10))
    bad = [i for i, r in enumerate(results) if r.outcome is Outcome.DEVICE_TERMINAL]
    assert bad == [3, 7]
    assert all(results[i].error_code == "80100000" for i in bad)
    assert all(r.outcome is Outcome.SENT for i, r in enumerate(results) if i not in bad)


CLASSIFY: list[tuple[HttpResponse, Outcome, str | None]] = [
    (_code("80000000"), Outcome.SENT, None),
    (_code("80300007", "All the tokens are invalid"), Outcome.DEVICE_TERMINAL, "80300007"),
    (_code("80200001", status=401), Outcome.CREDENTIAL, "80200001"),
    (_code("80200003", status=401), Outcome.CREDENTIAL, "80200003"),
    (_code("80300002", status=403), Outcome.CREDENTIAL, "80300002"),
    (_code("81000001", status=500), Outcome.PROVIDER_TRANSIENT, "81000001"),
    (_code("80600003", status=500), Outcome.PROVIDER_TRANSIENT, "80600003"),
    (_code("80100017", status=400), Outcome.QUOTA, "80100017"),
    (_code("80300008", status=413), Outcome.PAYLOAD, "80300008"),
    (_code("80100003", status=400), Outcome.PAYLOAD, "80100003"),
    (_code("80100013", status=400), Outcome.PAYLOAD, "80100013"),
    (_code("80300010", status=400), Outcome.PAYLOAD, "80300010"),
    (_code("89999999", status=200), Outcome.PAYLOAD, "89999999"),
    (_code("89999999", status=502), Outcome.PROVIDER_TRANSIENT, "89999999"),
    (_resp(503, b"Service Unavailable", {"retry-after": "7"}), Outcome.PROVIDER_TRANSIENT, "http_503"),
    (_resp(502, b"<html>bad gateway</html>"), Outcome.PROVIDER_TRANSIENT, "http_502"),
    (_resp(429, b""), Outcome.QUOTA, "http_429"),
    (_resp(403, b"forbidden"), Outcome.CREDENTIAL, "http_403"),
    (_resp(404, b"no route"), Outcome.PAYLOAD, "http_404"),
    (_resp(200, b"{}"), Outcome.PROVIDER_TRANSIENT, "http_200"),
    (_resp(200, {"code": 80000000, "requestId": "r"}), Outcome.SENT, None),
]


@pytest.mark.parametrize(("resp", "outcome", "code"), CLASSIFY)
def test_classification(resp: HttpResponse, outcome: Outcome, code: str | None) -> None:
    results = classify_hms_response(resp, ["a", "b"])
    assert [r.outcome for r in results] == [outcome, outcome]
    assert results[0].error_code == code
    assert results[0] is not results[1]


def test_classification_honours_retry_after() -> None:
    [r] = classify_hms_response(_resp(503, b"busy", {"retry-after": "7"}), ["a"])
    assert r.retry_after == 7.0


async def test_send_errors_through_provider() -> None:
    for resp, outcome, code in CLASSIFY:
        if code in ("80200001", "80200003") or resp.status == 401:
            continue
        provider, _ = await _provider(lambda _r, _d, resp=resp: resp)
        results = await provider.send_batch(MESSAGE, _targets(3))
        assert {r.outcome for r in results} == {outcome}, code


async def test_token_cached_across_batches_and_refreshed_near_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    import pushgate.providers.oauth as oauth

    clock = [1000.0]
    monkeypatch.setattr(oauth, "_clock", lambda: clock[0])
    provider, script = await _provider()
    await provider.send_batch(MESSAGE, _targets(2))
    await provider.send_batch(MESSAGE, _targets(2))
    assert script.oauth_calls == 1
    clock[0] += 3600 - 299  # inside the 5-minute refresh margin
    await provider.send_batch(MESSAGE, _targets(2))
    assert script.oauth_calls == 2
    assert script.auth_headers[-1] == "Bearer tok2"


async def test_one_token_exchange_for_concurrent_batches() -> None:
    provider, script = await _provider()
    await asyncio.gather(*(provider.send_batch(MESSAGE, _targets(3)) for _ in range(20)))
    assert script.oauth_calls == 1


@pytest.mark.parametrize("code", ["80200001", "80200003"])
async def test_auth_code_refreshes_token_and_retries_once(code: str) -> None:
    def first_rejected(req: HttpRequest, _doc: dict[str, Any]) -> HttpResponse:
        if req.headers["Authorization"] == "Bearer tok1":
            return _code(code, "OAuth token expired", 401)
        return _code("80000000")

    provider, script = await _provider(first_rejected)
    results = await provider.send_batch(MESSAGE, _targets(3))
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert script.auth_headers == ["Bearer tok1", "Bearer tok2"]
    assert script.oauth_calls == 2


async def test_auth_code_twice_is_credential_failure() -> None:
    provider, script = await _provider(lambda _r, _d: _code("80200001", "Oauth authentication error", 401))
    results = await provider.send_batch(MESSAGE, _targets(2))
    assert [(r.outcome, r.error_code) for r in results] == [(Outcome.CREDENTIAL, "80200001")] * 2
    assert len(script.sends) == 2  # one retry, no more


async def test_oauth_rejected_is_credential_and_unreachable_is_retryable() -> None:
    provider, script = await _provider()
    script.oauth_answer = _resp(400, {"error": 1101, "error_description": "invalid client secret"})
    results = await provider.send_batch(MESSAGE, _targets(2))
    assert {(r.outcome, r.error_code) for r in results} == {(Outcome.CREDENTIAL, "oauth_failed")}
    assert "invalid client secret" in (results[0].error_message or "")
    assert "s3cret" not in (results[0].error_message or "")
    assert script.sends == []

    provider, script = await _provider()
    script.oauth_answer = TransportError("connection refused")
    results = await provider.send_batch(MESSAGE, _targets(2))
    assert {r.outcome for r in results} == {Outcome.PROVIDER_TRANSIENT}


async def test_network_error_is_retryable() -> None:
    provider, _ = await _provider(lambda _r, _d: TransportError("reset"))
    results = await provider.send_batch(MESSAGE, _targets(2))
    assert {(r.outcome, r.error_code) for r in results} == {(Outcome.PROVIDER_TRANSIENT, "network")}


async def test_no_high_priority_permission_resends_as_normal() -> None:
    def no_high(_req: HttpRequest, doc: dict[str, Any]) -> HttpResponse:
        if doc["message"]["android"]["urgency"] == "HIGH":
            return _code("80300011", "No permission to send high-level message", 403)
        return _code("80000000")

    provider, script = await _provider(no_high)
    message = {**MESSAGE, "android": {**MESSAGE["android"], "urgency": "HIGH"}}
    results = await provider.send_batch(message, _targets(2))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert [s["message"]["android"]["urgency"] for s in script.sends] == ["HIGH", "NORMAL"]


async def test_badge_class_from_config_or_badge_dropped() -> None:
    message = render(Notification(title="T", badge=3), NO, 0.0)
    provider, script = await _provider(badge_class="com.example.Main")
    await provider.send_batch(message, _targets(1))
    assert script.sends[0]["message"]["android"]["notification"]["badge"] == {
        "set_num": 3,
        "class": "com.example.Main",
    }
    assert message["android"]["notification"]["badge"] == {"set_num": 3}  # rendering untouched
    provider, script = await _provider()
    await provider.send_batch(message, _targets(1))
    assert "badge" not in script.sends[0]["message"]["android"]["notification"]


async def test_concurrency_bounded() -> None:
    provider, script = await _provider(concurrency=2)
    targets = [Target(f"t{i}", f"topic:t{i}") for i in range(10)]
    await provider.send_batch(MESSAGE, targets)
    assert script.transport.max_in_flight <= 2
    assert await provider.send_batch(MESSAGE, []) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"client_secret": "s"}, "hms.app_id: required"),
        ({"app_id": "1"}, "hms.client_secret: required"),
        ({"app_id": "1", "client_secret": "s", "base_url": "ftp://x"}, "hms.base_url"),
        ({"app_id": "1", "client_secret": "s", "token_url": "nope"}, "hms.token_url"),
        ({"app_id": "1", "client_secret": "s", "concurrency": 0}, "hms.concurrency"),
        ({"app_id": "1", "client_secret": "s", "timeout": -1}, "hms.timeout"),
    ],
)
async def test_config_errors_name_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message):
        await HmsProvider.create(settings, Script(_ok).transport)
