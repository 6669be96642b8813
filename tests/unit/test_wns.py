"""WNS: rendering (toast/badge/raw XML and headers), classification, OAuth, and the lab.

Unit tests drive :class:`WnsProvider` over the mock transport; the integration tests run the
real gateway against the lab's WNS simulator (``pushgate/lab/wns.py``), which mints channel URIs,
checks the bearer token, the headers and the XML, and records each notification.
The tests against the lab and through the gateway are in ``test_wns_lab.py``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from support.transport import MockTransport

from pushgate.domain.notification import Action, Notification, ProviderOverrides, WnsOverride
from pushgate.domain.outcomes import Outcome
from pushgate.domain.render_wns import RENDERER, WnsRendered, normalize_token, render, wns_label
from pushgate.domain.rendering import RenderError, oversize
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.providers.transport import HttpRequest, HttpResponse, TransportError
from pushgate.providers.wns import WnsProvider, classify_wns_response

NO = ProviderOverrides()


def _xml(r: WnsRendered) -> ET.Element:
    return ET.fromstring(r.body)


# =================================================================== rendering


def test_toast_text_lines_and_headers() -> None:
    r = render(Notification(title="Hi <you>", body="A & B"), NO, 0.0)
    assert r.type == "toast"
    assert r.headers == {
        "X-WNS-Type": "wns/toast",
        "Content-Type": "text/xml",
        "X-WNS-RequestForStatus": "true",
    }
    root = _xml(r)
    assert root.tag == "toast"
    binding = root.find("visual/binding")
    assert binding is not None and binding.get("template") == "ToastGeneric"
    assert [t.text for t in binding.findall("text")] == ["Hi <you>", "A & B"]


def _attr(path: str, name: str) -> Callable[[ET.Element], Any]:
    def pick(root: ET.Element) -> Any:
        el = root.find(path)
        return None if el is None else el.get(name)

    return pick


def _launch(root: ET.Element) -> Any:
    return (root.get("launch"), root.get("activationType"))


TOAST_TABLE: list[tuple[dict[str, Any], Callable[[ET.Element], Any], Any]] = [
    ({"image": "https://x/i.png"}, _attr("visual/binding/image", "src"), "https://x/i.png"),
    ({"sound": "ms-winsoundevent:Default"}, _attr("audio", "src"), "ms-winsoundevent:Default"),
    ({"sound": "Assets/ding.mp3"}, _attr("audio", "src"), "ms-appx:///Assets/ding.mp3"),
    ({"sound": "default"}, lambda t: t.find("audio"), None),
    ({"url": "https://e.x/o/1"}, _launch, ("https://e.x/o/1", "protocol")),
    ({"click_action": "order=1"}, _launch, ("order=1", None)),
    ({"data": {"k": "v"}}, lambda t: t.get("launch"), '{"k":"v"}'),
    ({"interruption_level": "critical"}, lambda t: t.get("scenario"), "urgent"),
    ({"interruption_level": "passive"}, lambda t: t.get("scenario"), None),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "pick", "expected"), TOAST_TABLE)
def test_toast_field(fields: dict[str, Any], pick: Callable[[ET.Element], Any], expected: Any) -> None:
    r = render(Notification(title="T", **fields), NO, 0.0)
    assert pick(_xml(r)) == expected


HEADER_TABLE: list[tuple[dict[str, Any], str, str | None]] = [
    ({"ttl_seconds": 120}, "X-WNS-TTL", "120"),
    ({"collapse_key": "order-1"}, "X-WNS-Tag", "order-1"),
    ({"collapse_key": "a-much-longer-collapse-key"}, "X-WNS-Tag", wns_label("a-much-longer-collapse-key")),
    ({"thread_id": "chat"}, "X-WNS-Group", "chat"),
    ({"priority": "high"}, "X-WNS-PRIORITY", "1"),
    ({"priority": "normal"}, "X-WNS-PRIORITY", "2"),
    ({}, "X-WNS-TTL", None),
]


@pytest.mark.parametrize(("fields", "header", "expected"), HEADER_TABLE)
def test_toast_header(fields: dict[str, Any], header: str, expected: str | None) -> None:
    assert render(Notification(title="T", **fields), NO, 0.0).headers.get(header) == expected


def test_labels_longer_than_16_are_hashed_stably() -> None:
    label = wns_label("x" * 40)
    assert len(label) == 16 and label == wns_label("x" * 40) and label != wns_label("y" * 40)
    assert wns_label("ünïcode") != "ünïcode" and len(wns_label("ünïcode")) == 16


def test_actions_with_inputs() -> None:
    actions = [Action(id="reply", title="Reply", text_input="Type…"), Action(id="ok", title="OK")]
    root = _xml(render(Notification(title="T", actions=actions), NO, 0.0))
    box = root.find("actions")
    assert box is not None
    assert [c.tag for c in box] == ["input", "action", "action"]
    assert box[0].attrib == {"id": "reply", "type": "text", "placeHolderContent": "Type…"}
    assert box[1].attrib == {
        "content": "Reply",
        "arguments": "reply",
        "activationType": "foreground",
        "hint-inputId": "reply",
    }
    assert box[2].attrib == {"content": "OK", "arguments": "ok", "activationType": "foreground"}
    many = [Action(id=f"a{i}", title=f"A{i}") for i in range(8)]
    box = _xml(render(Notification(title="T", actions=many), NO, 0.0)).find("actions")
    assert box is not None and len(box) == 5


def test_badge_only_is_a_badge_notification() -> None:
    r = render(Notification(badge=7), NO, 0.0)
    assert (r.type, r.headers["X-WNS-Type"], r.headers["Content-Type"]) == ("badge", "wns/badge", "text/xml")
    assert _xml(r).attrib == {"value": "7"}
    assert "X-WNS-Tag" not in render(Notification(badge=1, collapse_key="k"), NO, 0.0).headers


@pytest.mark.parametrize(
    "fields",
    [
        {"content_available": True, "data": {"k": "v"}},
        {"background": True, "title": "T", "data": {"k": "v"}},
        {"data": {"k": "v"}},
    ],
)
def test_silent_and_data_only_are_raw(fields: dict[str, Any]) -> None:
    r = render(Notification(**fields), NO, 0.0)
    assert (r.type, r.headers["Content-Type"], r.headers["X-WNS-Type"]) == (
        "raw",
        "application/octet-stream",
        "wns/raw",
    )
    assert json.loads(r.body) == {"k": "v"}
    assert RENDERER.preview(r)["body"] == {"k": "v"}


def test_unmapped_fields_change_nothing() -> None:
    plain = render(Notification(title="T"), NO, 0.0)
    extra = render(
        Notification(
            title="T", category="c", channel_id="x", channel_importance="high", mutable_content=True, badge=3
        ),
        NO,
        0.0,
    )
    assert plain == extra


def test_overrides() -> None:
    tile = '<tile><visual><binding template="TileMedium"><text>x</text></binding></visual></tile>'
    r = render(
        Notification(title="T", ttl_seconds=5),
        ProviderOverrides(wns=WnsOverride(type="tile", body=tile)),
        0.0,
    )
    assert (r.type, r.headers["X-WNS-Type"], r.body) == ("tile", "wns/tile", tile.encode())
    assert r.headers["X-WNS-TTL"] == "5"
    r = render(
        Notification(title="T"),
        ProviderOverrides(
            wns=WnsOverride(headers={"x-wns-requestforstatus": "", "X-WNS-Cache-Policy": "no-cache"})
        ),
        0.0,
    )
    assert "X-WNS-RequestForStatus" not in r.headers and r.headers["X-WNS-Cache-Policy"] == "no-cache"
    r = render(Notification(title="T", data={"a": "b"}), ProviderOverrides(wns=WnsOverride(type="raw")), 0.0)
    assert r.type == "raw" and json.loads(r.body) == {"a": "b"}
    with pytest.raises(RenderError, match="tile"):
        render(Notification(title="T"), ProviderOverrides(wns=WnsOverride(type="tile")), 0.0)
    with pytest.raises(RenderError, match="badge"):
        render(Notification(title="T"), ProviderOverrides(wns=WnsOverride(type="badge")), 0.0)


def test_size_limit() -> None:
    fits = render(Notification(title="T", body="x" * 4800), NO, 0.0)
    assert oversize(RENDERER, fits) is None
    over = oversize(
        RENDERER, render(Notification(title="T", body="x" * 4096, data={"k": "y" * 1000}), NO, 0.0)
    )
    assert over is not None and over[1] == 5000 and over[0] > 5000
    preview = RENDERER.preview(fits)
    assert preview["url"] == "<channel URI>" and preview["headers"]["X-WNS-Type"] == "wns/toast"


@pytest.mark.parametrize(
    ("token", "allow_lab", "ok"),
    [
        ("https://db5p.notify.windows.com/?token=AwYAAAB", False, True),
        ("https://wns2-by3p.notify.windows.com/w/?token=BQYAAA%3d", False, True),
        ("http://db5p.notify.windows.com/?token=x", False, False),
        ("https://notify.windows.com.evil.example/?token=x", False, False),
        ("https://evil.example/?token=x", False, False),
        ("http://127.0.0.1:9/wns/notify/abc", False, False),
        ("http://127.0.0.1:9/wns/notify/abc", True, True),
        ("ftp://127.0.0.1/x", True, False),
        ("not a url", True, False),
        ("", True, False),
    ],
)
def test_normalize_token(token: str, allow_lab: bool, ok: bool) -> None:
    if ok:
        assert normalize_token(f"  {token} ", allow_lab=allow_lab) == token
    else:
        with pytest.raises(ValueError):
            normalize_token(token, allow_lab=allow_lab)


# =================================================================== provider (scripted transport)

TOKEN_URL = "https://login.live.com/accesstoken.srf"
SID = "ms-app://s-1-15-2-1-2-3"
CHANNEL = "https://db5p.notify.windows.com/?token=AwYAAAB"


def _resp(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> HttpResponse:
    return HttpResponse(status, headers or {}, body)


class Script:
    """WNS's OAuth endpoint plus a scripted send answer: a ``MockTransport`` handler.

    ``self.transport`` is the transport to give the provider (it records requests and
    concurrency); this handler keeps the OAuth forms and the sends.
    """

    def __init__(self, send: Callable[[HttpRequest], HttpResponse | Exception]) -> None:
        self.send = send
        self.sends: list[HttpRequest] = []
        self.oauth_forms: list[dict[str, list[str]]] = []
        self.oauth_answer: HttpResponse | Exception | None = None
        self.transport = MockTransport(self)

    def __call__(self, req: HttpRequest) -> HttpResponse | Exception:
        if "token" in req.url and "notify.windows.com" not in req.url:
            self.oauth_forms.append(parse_qs(req.body.decode()))
            return self.oauth_answer or HttpResponse(
                200,
                {},
                json.dumps(
                    {
                        "access_token": f"tok{len(self.oauth_forms)}",
                        "token_type": "bearer",
                        "expires_in": 86400,
                    }
                ).encode(),
            )
        self.sends.append(req)
        return self.send(req)


def _ok(_req: HttpRequest) -> HttpResponse:
    return _resp(200, {"x-wns-status": "received", "x-wns-msg-id": "ABC123"})


async def _provider(send: Any = _ok, **settings: Any) -> tuple[WnsProvider, Script]:
    script = Script(send)
    provider = await WnsProvider.create(
        {"package_sid": SID, "client_secret": "s3cret", **settings}, script.transport
    )
    return provider, script


TOAST = render(Notification(title="T", body="B", ttl_seconds=60), NO, 0.0)


async def test_request_shape_and_token_cached() -> None:
    provider, script = await _provider()
    results = await provider.send_batch(TOAST, [Target("a", CHANNEL), Target("b", CHANNEL + "2")])
    results += await provider.send_batch(TOAST, [Target("c", CHANNEL)])
    assert [(r.outcome, r.provider_message_id) for r in results] == [(Outcome.SENT, "ABC123")] * 3
    assert script.oauth_forms == [
        {
            "grant_type": ["client_credentials"],
            "client_id": [SID],
            "client_secret": ["s3cret"],
            "scope": ["notify.windows.com"],
        }
    ]
    req = script.sends[0]
    assert (req.method, req.url, req.body) == ("POST", CHANNEL, TOAST.body)
    assert req.headers == {**TOAST.headers, "Authorization": "Bearer tok1"}


async def test_entra_variant() -> None:
    provider, script = await _provider(auth="entra", tenant_id="contoso", client_id="app-guid")
    assert provider.oauth.token_url == "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
    await provider.send_batch(TOAST, [Target("a", CHANNEL)])
    form = script.oauth_forms[0]
    assert form["scope"] == ["https://wns.windows.com/.default"] and form["client_id"] == ["app-guid"]


CLASSIFY: list[tuple[HttpResponse, Outcome, str | None, float | None]] = [
    (_resp(200, {"x-wns-msg-id": "M"}), Outcome.SENT, None, None),
    (_resp(404), Outcome.DEVICE_TERMINAL, "http_404", None),
    (_resp(410), Outcome.DEVICE_TERMINAL, "http_410", None),
    (_resp(401), Outcome.CREDENTIAL, "http_401", None),
    (_resp(403), Outcome.CREDENTIAL, "http_403", None),
    (_resp(406, {"x-wns-continue-after": "30"}), Outcome.QUOTA, "http_406", 30.0),
    (_resp(406), Outcome.QUOTA, "http_406", 60.0),
    (_resp(413), Outcome.PAYLOAD, "http_413", None),
    (_resp(400, {"x-wns-error-description": "bad header"}), Outcome.PAYLOAD, "http_400", None),
    (_resp(405), Outcome.PAYLOAD, "http_405", None),
    (_resp(429, {"retry-after": "5"}), Outcome.QUOTA, "http_429", 5.0),
    (_resp(500), Outcome.PROVIDER_TRANSIENT, "http_500", None),
    (_resp(503, {"retry-after": "9"}), Outcome.PROVIDER_TRANSIENT, "http_503", 9.0),
]


@pytest.mark.parametrize(("resp", "outcome", "code", "retry_after"), CLASSIFY)
def test_classification(
    resp: HttpResponse, outcome: Outcome, code: str | None, retry_after: float | None
) -> None:
    r = classify_wns_response(resp)
    assert (r.outcome, r.error_code, r.retry_after) == (outcome, code, retry_after)
    if outcome is Outcome.CREDENTIAL:
        assert r.error_message  # names the problem


async def test_401_refreshes_once_then_credential() -> None:
    provider, script = await _provider(
        lambda req: _ok(req) if req.headers["Authorization"] == "Bearer tok2" else _resp(401)
    )
    [r] = await provider.send_batch(TOAST, [Target("a", CHANNEL)])
    assert r.outcome is Outcome.SENT and len(script.oauth_forms) == 2 and len(script.sends) == 2

    provider, script = await _provider(lambda _req: _resp(401))
    [r] = await provider.send_batch(TOAST, [Target("a", CHANNEL)])
    assert (r.outcome, r.error_code) == (Outcome.CREDENTIAL, "http_401")
    assert len(script.sends) == 2


async def test_concurrent_401s_share_one_refresh() -> None:
    provider, script = await _provider(
        lambda req: _ok(req) if req.headers["Authorization"] != "Bearer tok1" else _resp(401)
    )
    results = await provider.send_batch(TOAST, [Target(str(i), CHANNEL) for i in range(20)])
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(script.oauth_forms) == 2


async def test_oauth_failures() -> None:
    provider, script = await _provider()
    script.oauth_answer = _resp(
        400, body=b'{"error":"invalid_client","error_description":"Invalid client secret"}'
    )
    [r] = await provider.send_batch(TOAST, [Target("a", CHANNEL)])
    assert (r.outcome, r.error_code) == (Outcome.CREDENTIAL, "oauth_failed")
    assert "invalid_client" in (r.error_message or "") and "s3cret" not in (r.error_message or "")
    provider, script = await _provider()
    script.oauth_answer = TransportError("refused")
    [r] = await provider.send_batch(TOAST, [Target("a", CHANNEL)])
    assert r.outcome is Outcome.PROVIDER_TRANSIENT


async def test_foreign_channel_hosts_never_get_the_token() -> None:
    provider, script = await _provider()
    results = await provider.send_batch(
        TOAST,
        [
            Target("a", "https://evil.example/x"),
            Target("b", "http://db5p.notify.windows.com/?t=1"),
            Target("c", CHANNEL),
        ],
    )
    assert [(r.outcome, r.error_code) for r in results] == [
        (Outcome.DEVICE_TERMINAL, "invalid_channel_uri"),
        (Outcome.DEVICE_TERMINAL, "invalid_channel_uri"),
        (Outcome.SENT, None),
    ]
    assert [s.url for s in script.sends] == [CHANNEL]


async def test_network_error_and_concurrency() -> None:
    provider, script = await _provider(lambda _r: TransportError("reset"), concurrency=3)
    results = await provider.send_batch(TOAST, [Target(str(i), CHANNEL) for i in range(12)])
    assert {(r.outcome, r.error_code) for r in results} == {(Outcome.PROVIDER_TRANSIENT, "network")}
    assert script.transport.max_in_flight <= 3
    assert await provider.send_batch(TOAST, []) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"client_secret": "s"}, "wns.package_sid: required"),
        ({"package_sid": SID}, "wns.client_secret: required"),
        ({"package_sid": SID, "client_secret": "s", "auth": "oauth"}, "wns.auth"),
        ({"package_sid": SID, "client_secret": "s", "auth": "entra"}, "wns.tenant_id: required"),
        ({"package_sid": SID, "client_secret": "s", "token_url": "x"}, "wns.token_url"),
        ({"package_sid": SID, "client_secret": "s", "concurrency": -1}, "wns.concurrency"),
    ],
)
async def test_config_errors_name_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message):
        await WnsProvider.create(settings, Script(_ok).transport)
