"""Xiaomi MiPush: form-field rendering, classification, batching, and delivery through the lab.

Unit tests drive :class:`MiPushProvider` over a scripted transport; the integration tests run
the real gateway against the lab's MiPush simulator (``pushgate/lab/mipush.py``), which checks
the app secret, package name, form fields and limits the way MiPush does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tomllib
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from conftest import Gateway, Lab

from pushgate.domain.notification import MiPushOverride, Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_mipush import RENDERER, MiPushRendered, mipush_notify_id, normalize_token, render
from pushgate.domain.rendering import oversize
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.providers.http import create_transport
from pushgate.providers.mipush import REGION_HOSTS, MiPushProvider, classify_mipush_response
from pushgate.providers.transport import HttpRequest, HttpResponse, Transport, TransportError

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


# =================================================================== provider (scripted transport)

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


class Script(Transport):
    def __init__(self, send: Callable[[list[str], dict[str, str]], HttpResponse | Exception]) -> None:
        self.send = send
        self.requests: list[HttpRequest] = []
        self.forms: list[dict[str, str]] = []
        self.inflight = self.max_inflight = 0

    async def request(self, req: HttpRequest) -> HttpResponse:
        self.requests.append(req)
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        self.forms.append(form)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await asyncio.sleep(0)
            result = self.send(form["registration_id"].split(","), form)
        finally:
            self.inflight -= 1
        if isinstance(result, Exception):
            raise result
        return result


async def _provider(
    send: Any = lambda _r, _f: _resp(_ok_doc()), **settings: Any
) -> tuple[MiPushProvider, Script]:
    script = Script(send)
    provider = await MiPushProvider.create(
        {"app_secret": "s3cret", "package_name": "com.example.app", "base_url": BASE, **settings}, script
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
    req = script.requests[0]
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
    assert script.max_inflight <= 2 and len(script.forms) == 5
    assert await provider.send_batch(render(Notification(title="T"), NO, NOW), []) == []


@pytest.mark.parametrize(("region", "host"), sorted(REGION_HOSTS.items()))
async def test_region_hosts(region: str, host: str) -> None:
    script = Script(lambda _r, _f: _resp(_ok_doc()))
    provider = await MiPushProvider.create({"app_secret": "s", "package_name": "p", "region": region}, script)
    await provider.send_batch(MiPushRendered(fields={"pass_through": "1", "payload": "{}"}), _targets(1))
    assert script.requests[0].url == f"{host}/v3/message/regid"


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
        await MiPushProvider.create(settings, Script(lambda _r, _f: _resp(_ok_doc())))


# =================================================================== the lab


def _regid() -> str:
    return secrets.token_urlsafe(33) + "/" + secrets.token_hex(4)


def _mi_settings(lab: Lab) -> dict[str, Any]:
    return dict(tomllib.loads(lab.toml.read_text())["mipush"])


async def test_lab_checks_secret_package_and_fields(lab: Lab) -> None:
    lab.reset()
    transport = create_transport(timeout=10.0, ca_file=lab.ca_file)
    try:
        provider = await MiPushProvider.create(_mi_settings(lab), transport)
        rendered = render(Notification(title="T" * 80, body="B" * 300, data={"k": "v"}), NO, NOW)
        regids = [_regid() for _ in range(1500)]
        results = await provider.send_batch(rendered, [Target(r, r) for r in regids])
        assert {r.outcome for r in results} == {Outcome.SENT}
        ledger = lab.ledger("mipush")
        assert ledger["total"] == 1500
        assert Counter(i["batch_size"] for i in ledger["items"]) == Counter({1000: 1000, 500: 500})
        fields = ledger["items"][0]["fields"]
        assert len(fields["title"]) == 49 and len(fields["description"]) == 127
        assert fields["payload"] == '{"k":"v"}'

        wrong = await MiPushProvider.create({**_mi_settings(lab), "app_secret": "nope"}, transport)
        [r] = await wrong.send_batch(rendered, [Target("a", _regid())])
        assert (r.outcome, r.error_code) == (Outcome.CREDENTIAL, "21301")
        other = await MiPushProvider.create({**_mi_settings(lab), "package_name": "com.other"}, transport)
        [r] = await other.send_batch(rendered, [Target("a", _regid())])
        assert (r.outcome, r.error_code) == (Outcome.CREDENTIAL, "22022")
        too_long = MiPushRendered(fields={**rendered.fields, "title": "x" * 50})
        [r] = await provider.send_batch(too_long, [Target("a", _regid())])
        assert (r.outcome, r.error_code) == (Outcome.PAYLOAD, "10017")
        big = MiPushRendered(fields={**rendered.fields, "payload": "x" * 5000})
        [r] = await provider.send_batch(big, [Target("a", _regid())])
        assert (r.outcome, r.error_code) == (Outcome.PAYLOAD, "65009")
    finally:
        lab.reset()
        await transport.aclose()


async def _devices(gw: Gateway, n: int, channel: str) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(20)

    async def one() -> dict[str, Any]:
        async with sem:
            r = await gw.client.post(
                "/v1/devices",
                json={"provider": "mipush", "token": _regid(), "platform": "android", "channels": [channel]},
            )
            assert r.status_code == 200, r.text
            return dict(r.json()["device"])

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _publish(gw: Gateway, channel: str, **notification: Any) -> str:
    body = {
        "recipients": [{"type": "channel", "channel": channel}],
        "notification": notification or {"title": "Sale", "body": "50% off"},
    }
    r = await gw.client.post("/v1/publish", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["publish_id"])


async def _status(gw: Gateway, device_id: str) -> str:
    return str((await gw.client.get(f"/v1/devices/{device_id}")).json()["device"]["status"])


async def test_fanout_200_devices_one_request_field_set_each(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 200, "deals")
    pub = await _publish(
        gateway,
        "deals",
        title="Sale",
        body="50% off today",
        data={"deal": "7"},
        ttl_seconds=600,
        collapse_key="deal-7",
        channel_id="promo",
        url="https://shop.example/d/7",
    )
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 200, status
    ledger = lab.ledger("mipush")
    assert ledger["total"] == 200
    assert Counter(i["token"] for i in ledger["items"]) == Counter(d["token"] for d in devices)
    for item in ledger["items"]:
        f = item["fields"]
        assert item["batch_size"] <= 1000
        assert (f["title"], f["description"], f["pass_through"]) == ("Sale", "50% off today", "0")
        assert f["payload"] == '{"deal":"7"}'
        assert f["restricted_package_name"] == "com.example.pushgate.lab"
        assert f["time_to_live"] == "600000" and f["notify_id"] == str(mipush_notify_id("deal-7", 0))
        assert (f["extra.channel_id"], f["extra.notify_effect"], f["extra.web_uri"]) == (
            "promo",
            "3",
            "https://shop.example/d/7",
        )
    assert {d["status"] for d in await gateway.deliveries(pub)} == {"sent"}


async def test_bad_regids_mark_exactly_those_devices(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 10, "news")
    dead = devices[:3]
    lab.fault(provider="mipush", tokens=[d["token"] for d in dead], error="unregistered")
    pub = await _publish(gateway, "news")
    status = await gateway.wait_done(pub)
    assert (status["counts"]["invalid_token"], status["counts"]["sent"]) == (3, 7)
    invalid = await gateway.deliveries(pub, status="invalid_token")
    assert {x["device_id"] for x in invalid} == {d["id"] for d in dead}
    assert [await _status(gateway, d["id"]) for d in devices] == ["invalid"] * 3 + ["active"] * 7


async def test_no_valid_regid_marks_every_device(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 3, "gone")
    lab.fault(provider="mipush", tokens=[d["token"] for d in devices], error="invalid")
    pub = await _publish(gateway, "gone")
    status = await gateway.wait_done(pub)
    assert status["counts"]["invalid_token"] == 3
    assert {x["error_code"] for x in await gateway.deliveries(pub)} == {"20301"}
    assert {await _status(gateway, d["id"]) for d in devices} == {"invalid"}


@pytest.mark.parametrize(("error", "code"), [("429", "10027"), ("503", "10002"), ("500", "10003")])
async def test_retryable_error_is_retried_then_delivered(
    gateway: Gateway, lab: Lab, error: str, code: str
) -> None:
    devices = await _devices(gateway, 4, "retry")
    lab.fault(provider="mipush", tokens=[devices[0]["token"]], error=error, times=1)
    pub = await _publish(gateway, "retry")
    status = await gateway.wait_done(pub)
    assert status["counts"]["sent"] == 4, status
    assert {d["attempts"] for d in await gateway.deliveries(pub)} == {2}
    assert Counter(i["token"] for i in lab.ledger("mipush")["items"]) == Counter(d["token"] for d in devices)


async def test_credential_error_keeps_devices(gateway: Gateway, lab: Lab) -> None:
    devices = await _devices(gateway, 3, "auth")
    lab.fault(provider="mipush", tokens=[d["token"] for d in devices], error="auth")
    pub = await _publish(gateway, "auth")
    status = await gateway.wait_done(pub)
    assert status["counts"]["failed"] == 3
    assert {(d["status"], d["error_code"]) for d in await gateway.deliveries(pub)} == {("failed", "21301")}
    assert {await _status(gateway, d["id"]) for d in devices} == {"active"}
