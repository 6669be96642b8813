"""The provider registry: a seventh delivery path is one spec, registered without editing pushgate.

The dummy provider below is everything a new provider brings: a settings Struct, a provider
class, a pure renderer and a spec. Registered in this process, it is reachable end to end: the
config file's ``[dummy]`` section, ``[retry.dummy]`` and ``dummy_per_second`` are understood,
devices can be registered for it, a publish is planned, rendered, size-checked, sent through the
transport and recorded, and the credentials and health routes list it.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec
import pytest
from support.api import wait_final
from support.gateway import running_gateway
from support.transport import MockTransport, json_response

from pushgate.config import ConfigError, load_settings
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.rendering import Renderer
from pushgate.providers import registry
from pushgate.providers.base import (
    Concurrency,
    CredentialInfo,
    HttpUrl,
    Provider,
    ProviderConfigError,
    ProviderSettings,
    ProviderSpec,
    Target,
)
from pushgate.providers.settings import required, section
from pushgate.providers.transport import HttpRequest, HttpResponse, Transport, TransportError

APP_KEY = "registry-test-key-0123456789"
BASE = "https://push.dummy.example"


class DummySettings(ProviderSettings, forbid_unknown_fields=True, omit_defaults=True):
    api_key: str | None = None
    base_url: HttpUrl = BASE
    concurrency: Concurrency = 4


class DummyProvider(Provider):
    name: ClassVar[str] = "dummy"

    def __init__(self, transport: Transport, settings: DummySettings, api_key: str) -> None:
        self.transport = transport
        self.settings = settings
        self.api_key = api_key

    @classmethod
    async def create(cls, settings: Any, transport: Transport) -> DummyProvider:
        s = section(DummySettings, "dummy", settings)
        return cls(transport, s, required(s.api_key, "dummy", "api_key"))

    async def send_batch(self, rendered: Any, targets: Sequence[Target]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._send(rendered, t) for t in targets)))

    async def _send(self, rendered: bytes, target: Target) -> SendResult:
        req = HttpRequest(
            "POST",
            f"{self.settings.base_url}/send/{target.token}",
            {"authorization": f"Key {self.api_key}", "content-type": "application/json"},
            rendered,
        )
        try:
            resp = await self.transport.request(req)
        except TransportError as exc:
            return SendResult(Outcome.PROVIDER_TRANSIENT, error_code="network", error_message=str(exc))
        if resp.status == 200:
            return SendResult(Outcome.SENT, provider_message_id=json.loads(resp.body)["id"])
        if resp.status == 410:
            return SendResult(Outcome.DEVICE_TERMINAL, error_code="Gone")
        return SendResult(Outcome.PROVIDER_TRANSIENT, error_code=str(resp.status))


def _render(n: Notification, _o: ProviderOverrides, _now: float) -> bytes:
    return msgspec.json.encode({"title": n.title, "body": n.body, "data": n.data})


RENDERER = Renderer(
    name="dummy",
    render=_render,
    size=len,
    limit=lambda _r: 256,
    preview=lambda r: {"method": "POST", "body": json.loads(r)},
)

SPEC = ProviderSpec(
    name="dummy",
    settings=DummySettings,
    provider=DummyProvider,
    renderer=RENDERER,
    platforms=frozenset({"other"}),
    describe=lambda s: CredentialInfo(f"dummy key …{(s.api_key or '')[-4:]}"),
)


def _answer(req: HttpRequest) -> HttpResponse:
    if req.url.endswith("/gone"):
        return HttpResponse(410, {}, b"")
    return json_response(200, {"id": "m-" + req.url.rsplit("/", 1)[1]})


def test_registered_is_scoped_and_refuses_a_taken_name() -> None:
    before = registry.names()
    with registry.registered(SPEC):
        assert registry.names() == (*before, "dummy")
        assert registry.get("dummy") is SPEC
        with pytest.raises(ValueError, match="already registered"), registry.registered(SPEC):
            pass
        assert registry.names() == (*before, "dummy")
    assert registry.names() == before
    assert registry.find("dummy") is None


def test_config_keys_follow_the_registry(tmp_path: pathlib.Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[dummy]\napi_key = "k-123456"\n[retry.dummy]\nmax_attempts = 2\n'
        "[rate_limits]\ndummy_per_second = 5\n"
        '[apps.shop.dummy]\napi_key = "k-shop"\n[apps.shop.rate_limits]\ndummy_per_second = 1\n'
    )
    with pytest.raises(ConfigError, match=r"dummy: unknown key"):
        load_settings(cfg, env={})
    with registry.registered(SPEC):
        s = load_settings(cfg, env={"PUSHGATE_DUMMY_CONCURRENCY": "8"})
        assert s.providers["dummy"] == DummySettings(api_key="k-123456", concurrency=8)
        assert s.apps["shop"].providers["dummy"].api_key == "k-shop"
        assert s.retry.by_provider["dummy"].max_attempts == 2
        assert s.rate_limits.provider_rate("dummy") == 5.0
        assert s.apps["shop"].rate_limits is not None and s.apps["shop"].rate_limits.by_provider == {
            "dummy": 1.0
        }
        cfg.write_text("[dummy]\nconcurrency = 0\n")
        with pytest.raises(ConfigError, match=r"dummy\.concurrency"):
            load_settings(cfg, env={})


async def test_create_takes_the_typed_settings() -> None:
    t = MockTransport(_answer)
    p = await DummyProvider.create(DummySettings(api_key="k"), t)
    assert isinstance(p, DummyProvider) and p.settings.concurrency == 4
    with pytest.raises(ProviderConfigError, match=r"dummy\.api_key: required"):
        await DummyProvider.create(DummySettings(), t)
    with pytest.raises(ProviderConfigError, match=r"dummy\.base_url"):
        await DummyProvider.create({"api_key": "k", "base_url": "ftp://x"}, t)


async def test_a_seventh_provider_delivers_end_to_end(tmp_path: pathlib.Path) -> None:
    transport = MockTransport(_answer)
    env = {
        "PUSHGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'pushgate.db'}",
        "PUSHGATE_DEFAULT_APP_KEY": APP_KEY,
        "PUSHGATE_ENGINE_POLL_INTERVAL": "0.1",
        "PUSHGATE_SERVER_ACCESS_LOG": "false",
        "PUSHGATE_DUMMY_API_KEY": "dummy-secret-key",
    }
    with registry.registered(SPEC):
        settings = load_settings(None, env=env)
        async with running_gateway(settings, transport=transport) as gw, gw.as_app(APP_KEY) as c:
            r = await c.post("/v1/devices", json={"provider": "dummy", "token": "dev-1", "platform": "other"})
            assert r.status_code == 200, r.text
            device_id = r.json()["device"]["id"]
            bad = await c.post("/v1/devices", json={"provider": "dummy", "token": "x", "platform": "ios"})
            assert bad.status_code == 400 and "cannot use provider 'dummy'" in bad.text

            big = await c.post(
                "/v1/publish",
                json={
                    "recipients": [{"type": "device", "device_id": device_id}],
                    "notification": {"body": "x" * 300},
                },
            )
            assert big.status_code == 400 and big.json()["error"]["code"] == "payload_too_large"

            r = await c.post(
                "/v1/publish",
                json={
                    "recipients": [
                        {"type": "device", "device_id": device_id},
                        {"type": "token", "provider": "dummy", "token": "gone"},
                    ],
                    "notification": {"title": "Hi", "body": "there"},
                },
            )
            assert r.status_code == 202, r.text
            done = await wait_final(c, r.json()["publish_id"], within=30)
            assert done["status"] == "completed"
            assert done["by_provider"]["dummy"]["sent"] == 1
            assert done["by_provider"]["dummy"]["invalid_token"] == 1
            deliveries = (await c.get(f"/v1/publishes/{done['id']}/deliveries")).json()["items"]
            assert sorted((d["status"], d["provider_message_id"]) for d in deliveries) == [
                ("invalid_token", None),
                ("sent", "m-dev-1"),
            ]

            sent = transport.to(f"{BASE}/send/")
            assert sorted(q.url.rsplit("/", 1)[1] for q in sent) == ["dev-1", "gone"]
            assert all(q.headers["authorization"] == "Key dummy-secret-key" for q in sent)
            assert json.loads(sent[0].body) == {"title": "Hi", "body": "there", "data": None}

            creds = (await c.get("/v1/credentials")).json()["items"]
            assert {"provider": "dummy", "source": "config", "fingerprint": "dummy key …-key"} in creds
            health = (await c.get("/v1/health/providers")).json()
            assert "dummy" in json.dumps(health)
    assert registry.find("dummy") is None
    assert not transport.closed  # the caller's transport: the gateway does not close it


async def test_a_provider_that_raises_fails_its_chunk_instead_of_crashing_the_batch(
    tmp_path: pathlib.Path,
) -> None:
    """A provider that does not isolate its targets (this one parses ``{"id"}`` out of any 200)
    still cannot crash a batch: the dispatcher's net gives the chunk's targets an outcome."""
    transport = MockTransport(lambda req: HttpResponse(200, {}, b"[" * 100_000))
    env = {
        "PUSHGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'pushgate.db'}",
        "PUSHGATE_DEFAULT_APP_KEY": APP_KEY,
        "PUSHGATE_ENGINE_POLL_INTERVAL": "0.1",
        "PUSHGATE_SERVER_ACCESS_LOG": "false",
        "PUSHGATE_DUMMY_API_KEY": "dummy-secret-key",
        "PUSHGATE_RETRY_MAX_ATTEMPTS": "1",
    }
    with registry.registered(SPEC):
        settings = load_settings(None, env=env)
        async with running_gateway(settings, transport=transport) as gw, gw.as_app(APP_KEY) as c:
            r = await c.post(
                "/v1/publish",
                json={
                    "recipients": [{"type": "token", "provider": "dummy", "token": "t1"}],
                    "notification": {"title": "Hi"},
                },
            )
            assert r.status_code == 202, r.text
            done = await wait_final(c, r.json()["publish_id"], within=20)
            [record] = (await c.get(f"/v1/publishes/{done['id']}/deliveries")).json()["items"]
            assert (record["status"], record["error_class"], record["error_code"]) == (
                "failed",
                "provider_transient",
                "invalid_response",
            )
            assert len(transport.requests) == 1


def test_builtin_specs_carry_what_the_api_reads() -> None:
    assert registry.names() == ("fcm", "webpush", "hms", "wns", "apns", "mipush")
    for spec in registry.specs():
        assert spec.renderer.name == spec.name and spec.provider.name == spec.name
        assert issubclass(spec.settings, ProviderSettings)
    found = registry.native("hms_condition")
    assert found is not None and (found[0].name, found[1]) == ("hms", "condition")
    assert registry.native("fcm_topic") is not None and registry.native("apns_topic") is None
    apns = registry.get("apns")
    assert apns.environments and apns.normalize_token(" <" + "AB" * 32 + "> ", False) == ("ab" * 32,) * 2
    assert apns.platform_error("android") is not None and apns.platform_error("ios") is None
    with pytest.raises(ValueError, match="must be a string"):
        registry.get("fcm").normalize_token({"x": 1}, False)
    with pytest.raises(ValueError, match="whitespace"):
        registry.get("fcm").normalize_token("a b", False)
    sub = {"endpoint": "https://push.example.com/x", "keys": {"p256dh": "BAAA", "auth": "AAAA"}}
    with pytest.raises(ValueError, match="invalid Web Push subscription"):
        registry.get("webpush").normalize_token(sub, False)
    assert registry.get("fcm").quota_floor == 60.0 and registry.get("hms").quota_floor == 0.0
