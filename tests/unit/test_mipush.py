"""Xiaomi MiPush: form-field rendering, classification, batching, and delivery through the lab.

Unit tests drive :class:`MiPushProvider` over the mock transport; the integration tests run
the real gateway against the lab's MiPush simulator (``pushgate/lab/mipush.py``), which checks
the app secret, package name, form fields and limits the way MiPush does.
The tests against the lab and through the gateway are in ``test_mipush_lab.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from support.transport import MockTransport

from pushgate.domain.notification import MiPushOverride, Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_mipush import RENDERER, MiPushRendered, mipush_notify_id, normalize_token, render
from pushgate.domain.rendering import oversize
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.providers.mipush import REGION_HOSTS, MiPushProvider, classify_mipush_response
from pushgate.providers.transport import HttpRequest, HttpResponse, TransportError

NO = ProviderOverrides()
NOW = 1_700_000_000.5


def _f(**fields: Any) -> dict[str, str]:
    return render(Notification(**fields), NO, NOW).fields


# =================================================================== rendering

RENDER_TABLE: list[tuple[dict[str, Any], str, str | None]] = [
    ({"title": "T", "body": "B"}, "title", "T"),
    ({"title": "T", "body": "B"}, "description", "B"),
    ({"title": "T", "body": "B"}, "pass_through", "0"),
    ({"title": "T"}, "description", "T"),
    ({"body": "B"}, "title", "B"),
    ({"title": "x" * 60}, "title", "x" * 48 + "…"),
    ({"title": "T", "body": "y" * 200}, "description", "y" * 126 + "…"),
    ({"title": "T", "data": {"k": "v"}}, "payload", '{"k":"v"}'),
    ({"title": "T"}, "payload", "{}"),
    ({"title": "T"}, "notify_type", "-1"),
    ({"title": "T", "sound": "none"}, "notify_type", "6"),
    ({"title": "T", "sound": "ding"}, "extra.sound_uri", "android.resource://{package_name}/raw/ding"),
    ({"title": "T", "sound": "android.resource://com.x/raw/a"}, "extra.sound_uri", "android.resource://com.x/raw/a"),
    ({"title": "T", "sound": "default"}, "extra.sound_uri", None),
    ({"title": "T", "channel_id": "orders"}, "extra.channel_id", "orders"),
    ({"title": "T", "url": "https://e.x/1"}, "extra.web_uri", "https://e.x/1"),
    ({"title": "T", "url": "https://e.x/1"}, "extra.notify_effect", "3"),
    ({"title": "T", "click_action": "intent:#Intent;end"}, "extra.intent_uri", "intent:#Intent;end"),
    ({"title": "T", "click_action": "intent:#Intent;end"}, "extra.notify_effect", "2"),
    ({"title": "T", "ttl_seconds": 90}, "time_to_live", "90000"),
    ({"title": "T", "collapse_key": "77"}, "notify_id", "77"),
    ({"title": "T", "collapse_key": "order"}, "notify_id", str(mipush_notify_id("order", 0))),
    ({"title": "T"}, "notify_id", str(int(NOW * 1000) % (2**31 - 1))),
    ({"content_available": True, "title": "T", "data": {"k": "v"}}, "pass_through", "1"),
    ({"content_available": True, "title": "T"}, "title", None),
    ({"data": {"k": "v"}}, "pass_through", "1"),
    ({"background": True, "ttl_seconds": 5}, "time_to_live", "5000"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "key", "expected"), RENDER_TABLE)
def test_render_field(fields: dict[str, Any], key: str, expected: str | None) -> None:
    assert _f(**fields).get(key) == expected


def test_unmapped_fields_change_nothing() -> None:
    plain = _f(title="T")
    extra = _f(
        title="T",
        image="https://x/i.png",
        badge=3,
        priority="high",
        thread_id="t",
        category="c",
        channel_importance="high",
        mutable_content=True,
    )
    assert plain == extra


def test_overrides_set_and_remove_fields() -> None:
    o = ProviderOverrides(mipush=MiPushOverride(fields={"extra.notify_foreground": "0", "notify_type": ""}))
    fields = render(Notification(title="T"), o, NOW).fields
    assert fields["extra.notify_foreground"] == "0" and "notify_type" not in fields


def test_size_counts_the_payload() -> None:
    fits = render(Notification(title="T", data={"k": "x" * 4000}), NO, NOW)
    assert oversize(RENDERER, fits) is None
    over = oversize(RENDERER, render(Notification(title="T", data={"k": "x" * 4100}), NO, NOW))
    assert over is not None and over[1] == 4096
    preview = RENDERER.preview(fits)
    assert preview["body"]["title"] == "T" and "registration_id" in preview["body"]


def test_normalize_token() -> None:
    assert normalize_token(" abc ", allow_lab=False) == "abc"
    for bad in ("", "a b", "a,b", "x" * 4097):
        with pytest.raises(ValueError):
            normalize_token(bad, allow_lab=True)


# =================================================================== provider (mock transport)

BASE = "https://mi.test"


def _ok_doc(bad: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "slm123"}
    if bad:
        data["bad_regids"] = ",".join(bad)
    return {"result": "ok", "code": 0, "data": data, "description": "成功", "trace_id": "t"}


def _resp(doc: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(
        status,
        {"content-type": "application/json"},
        doc if isinstance(doc, bytes) else json.dumps(doc).encode(),
    )


def _err(code: int) -> HttpResponse:
    return _resp({"result": "error", "code": code, "reason": f"reason {code}"})


class Script:
    """MiPush's send endpoint with a scripted answer per request: a ``MockTransport`` handler.

    ``self.transport`` is the transport to give the provider (it records requests and
    concurrency); this handler keeps the decoded forms.
    """

    def __init__(self, send: Callable[[list[str], dict[str, str]], HttpResponse | Exception]) -> None:
        self.send = send
        self.forms: list[dict[str, str]] = []
        self.transport = MockTransport(self)

    def __call__(self, req: HttpRequest) -> HttpResponse | Exception:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        self.forms.append(form)
        return self.send(form["registration_id"].split(","), form)


async def _provider(
    send: Any = lambda _r, _f: _resp(_ok_doc()), **settings: Any
) -> tuple[MiPushProvider, Script]:
    script = Script(send)
    provider = await MiPushProvider.create(
        {"app_secret": "s3cret", "package_name": "com.example.app", "base_url": BASE, **settings},
        script.transport,
    )
    return provider, script


def _targets(n: int) -> list[Target]:
    return [Target(f"dev_{i}", f"reg{i}") for i in range(n)]


async def test_request_shape_and_1000_regid_batches() -> None:
    provider, script = await _provider()
    rendered = render(Notification(title="T", body="B", sound="ding"), NO, NOW)
    results = await provider.send_batch(rendered, _targets(2100))
    assert [(r.outcome, r.provider_message_id) for r in results] == [(Outcome.SENT, "slm123")] * 2100
    assert [len(f["registration_id"].split(",")) for f in script.forms] == [1000, 1000, 100]
    req = script.transport.requests[0]
    assert req.url == f"{BASE}/v3/message/regid"
    assert req.headers == {
        "Authorization": "key=s3cret",
        "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
    }
    form = script.forms[0]
    assert form["restricted_package_name"] == "com.example.app"
    assert form["extra.sound_uri"] == "android.resource://com.example.app/raw/ding"
    assert (form["title"], form["description"], form["pass_through"]) == ("T", "B", "0")
    assert rendered.fields["extra.sound_uri"].startswith("android.resource://{package_name}")  # untouched


async def test_bad_regids_are_terminal_rest_sent() -> None:
    provider, _ = await _provider(lambda regids, _f: _resp(_ok_doc([regids[1], regids[4]])))
    results = await provider.send_batch(render(Notification(title="T"), NO, NOW), _targets(6))
    assert [r.outcome for r in results] == [
        Outcome.SENT,
        Outcome.DEVICE_TERMINAL,
        Outcome.SENT,
        Outcome.SENT,
        Outcome.DEVICE_TERMINAL,
        Outcome.SENT,
    ]
    assert results[1].error_code == "bad_regid"


async def test_20301_for_a_batch_is_resolved_one_regid_at_a_time() -> None:
    def answer(regids: list[str], _f: dict[str, str]) -> HttpResponse:
        if len(regids) > 1 or regids[0] in ("reg0", "reg2"):
            return _err(20301)
        return _resp(_ok_doc())

    provider, script = await _provider(answer)
    results = await provider.send_batch(render(Notification(title="T"), NO, NOW), _targets(3))
    assert [(r.outcome, r.error_code) for r in results] == [
        (Outcome.DEVICE_TERMINAL, "20301"),
        (Outcome.SENT, None),
        (Outcome.DEVICE_TERMINAL, "20301"),
    ]
    assert len(script.forms) == 4


CLASSIFY: list[tuple[HttpResponse, Outcome, str | None]] = [
    (_resp(_ok_doc()), Outcome.SENT, None),
    (_err(10002), Outcome.PROVIDER_TRANSIENT, "10002"),
    (_err(10003), Outcome.PROVIDER_TRANSIENT, "10003"),
    (_err(10027), Outcome.QUOTA, "10027"),
    (_err(1), Outcome.PROVIDER_TRANSIENT, "1"),
    (_err(10001), Outcome.PROVIDER_TRANSIENT, "10001"),
    (_err(10034), Outcome.QUOTA, "10034"),
    (_err(21301), Outcome.CREDENTIAL, "21301"),
    (_err(21302), Outcome.CREDENTIAL, "21302"),
    (_err(22022), Outcome.CREDENTIAL, "22022"),
    (_err(10031), Outcome.CREDENTIAL, "10031"),
    (_err(65009), Outcome.PAYLOAD, "65009"),
    (_err(10017), Outcome.PAYLOAD, "10017"),
    (_err(20301), Outcome.PAYLOAD, "20301"),  # for several regIds (the provider splits first)
    (_err(99999), Outcome.PAYLOAD, "99999"),
    (_resp({"result": "error", "code": "10027"}), Outcome.QUOTA, "10027"),
    (_resp(b"<html>busy</html>", 502), Outcome.PROVIDER_TRANSIENT, "http_502"),
    (_resp(b"nope", 401), Outcome.CREDENTIAL, "http_401"),
    (_resp(b"not json", 200), Outcome.PROVIDER_TRANSIENT, "http_200"),
    (_resp(b"gone", 404), Outcome.PAYLOAD, "http_404"),
]


@pytest.mark.parametrize(("resp", "outcome", "code"), CLASSIFY)
def test_classification(resp: HttpResponse, outcome: Outcome, code: str | None) -> None:
    results = classify_mipush_response(resp, ["a", "b"])
    assert [(r.outcome, r.error_code) for r in results] == [(outcome, code)] * 2
    assert results[0] is not results[1]


def test_single_regid_20301_is_terminal_and_quota_waits() -> None:
    [r] = classify_mipush_response(_err(20301), ["a"])
    assert r.outcome is Outcome.DEVICE_TERMINAL
    [r] = classify_mipush_response(_err(10034), ["a"])
    assert r.retry_after == 3600.0


async def test_network_error_and_concurrency() -> None:
    provider, script = await _provider(lambda _r, _f: TransportError("reset"), concurrency=2)
    results = await provider.send_batch(render(Notification(title="T"), NO, NOW), _targets(5000))
    assert {(r.outcome, r.error_code) for r in results} == {(Outcome.PROVIDER_TRANSIENT, "network")}
    assert script.transport.max_in_flight <= 2 and len(script.forms) == 5
    assert await provider.send_batch(render(Notification(title="T"), NO, NOW), []) == []


@pytest.mark.parametrize(("region", "host"), sorted(REGION_HOSTS.items()))
async def test_region_hosts(region: str, host: str) -> None:
    script = Script(lambda _r, _f: _resp(_ok_doc()))
    provider = await MiPushProvider.create(
        {"app_secret": "s", "package_name": "p", "region": region}, script.transport
    )
    await provider.send_batch(MiPushRendered(fields={"pass_through": "1", "payload": "{}"}), _targets(1))
    assert script.transport.requests[0].url == f"{host}/v3/message/regid"


def test_region_hosts_match_providers_md() -> None:
    assert REGION_HOSTS["china"] == "https://api.xmpush.xiaomi.com"
    assert REGION_HOSTS["global"] == "https://sgp-api.xmpush.global.xiaomi.com"
    assert REGION_HOSTS["europe"] == "https://fr-api.xmpush.global.xiaomi.com"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"package_name": "p"}, "mipush.app_secret: required"),
        ({"app_secret": "s"}, "mipush.package_name: required"),
        ({"app_secret": "s", "package_name": "p", "region": "mars"}, "mipush.region"),
        ({"app_secret": "s", "package_name": "p", "base_url": "x"}, "mipush.base_url"),
        ({"app_secret": "s", "package_name": "p", "concurrency": 0}, "mipush.concurrency"),
    ],
)
async def test_config_errors_name_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message):
        await MiPushProvider.create(settings, Script(lambda _r, _f: _resp(_ok_doc())).transport)
