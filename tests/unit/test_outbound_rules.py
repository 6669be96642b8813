"""The outbound URL policy without a network: the text rules (``domain/urls.py``), the
connect-time decision with a scripted resolver (``providers/outbound.py``), and what a refusal
becomes for a target, a token exchange and a tenant (issue 9, items 1 and 2)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from support.transport import MockTransport, json_response

from pushgate.config import ConfigError, load_settings
from pushgate.domain.notification import Notification, ProviderOverrides
from pushgate.domain.outcomes import Outcome, SendResult
from pushgate.domain.render import b64url_encode
from pushgate.domain.render_hms import render as hms_render
from pushgate.domain.render_wns import normalize_token as wns_token
from pushgate.domain.render_wns import render as wns_render
from pushgate.domain.urls import Allowance, UrlRefused, check_target, non_public, parse_target
from pushgate.providers import registry
from pushgate.providers.base import ProviderConfigError, Target
from pushgate.providers.hms import HmsProvider
from pushgate.providers.oauth import ClientCredentials, OAuthError
from pushgate.providers.outbound import (
    OutboundPolicy,
    OutboundRefused,
    bounded,
    foreign_answer,
    is_foreign,
    transport_failure,
)
from pushgate.providers.transport import HttpRequest, HttpResponse, TransportError
from pushgate.providers.wns import WnsProvider
from pushgate.runtime import check_credentials

#: Loopback and cloud-metadata addresses in the spellings a red team tried (issue 9, item 1).
LOOPBACK_SPELLINGS = [
    "https://127.0.0.1/push",
    "https://127.1/push",
    "https://2130706433/push",
    "https://0x7f000001/push",
    "https://0x7f.1/push",
    "https://0177.0.0.1/push",
    "https://127.000.000.001/push",
    "https://%31%32%37.0.0.1/push",
    "https://\uff11\uff12\uff17.0.0.1/push",
    "https://[::1]/push",
    "https://[::ffff:127.0.0.1]/push",
    "https://[0:0:0:0:0:ffff:7f00:1]/push",
    "https://localhost/push",
    "https://169.254.169.254/latest/meta-data",
    "https://2852039166/latest/meta-data",
    "https://0xa9.0xfe.0xa9.0xfe/latest/meta-data",
    "https://[::ffff:169.254.169.254]/latest/meta-data",
    "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
    "https://[2002:a9fe:a9fe::]/latest/meta-data",
    "https://0.0.0.0/push",
    "https://[::]/push",
    "https://100.64.0.1/push",
    "https://10.0.0.1/push",
    "https://user@push.example.com@127.0.0.1/push",
]


def _subscription(endpoint: str) -> dict[str, object]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    return {"endpoint": endpoint, "keys": {"p256dh": b64url_encode(point), "auth": b64url_encode(b"a" * 16)}}


@pytest.mark.parametrize("endpoint", LOOPBACK_SPELLINGS)
def test_loopback_and_metadata_spellings_are_refused_as_web_push_endpoints(endpoint: str) -> None:
    with pytest.raises(ValueError, match="Web Push endpoint: "):
        registry.get("webpush").normalize_token(_subscription(endpoint), False)


def test_a_public_endpoint_is_still_accepted() -> None:
    token, key = registry.get("webpush").normalize_token(
        _subscription("https://fcm.googleapis.com/wp/abc"), False
    )
    assert key == "https://fcm.googleapis.com/wp/abc" and key in token


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://0x7f.1/", "dotted quad: 127.0.0.1"),
        ("https://B\u00fccher.de/", "punycode): xn--bcher-kva.de"),
        ("https://%65vil.example/", "percent-encoding"),
        ("https://evil.example./", "trailing dot"),
        ("https://u:p@push.example.com/", "user information"),
        ("https://evil.example\\.notify.windows.com/", "backslash"),
        ("https:evil.example/", "must start with https://"),
        ("ftp://push.example.com/", "scheme 'ftp'"),
        ("https://push.example.com:0443/", "without leading zeros"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("http://push.example.com/", "must use https://"),
    ],
)
def test_refusals_say_what_to_write_instead(url: str, says: str) -> None:
    with pytest.raises(UrlRefused, match=None) as err:
        check_target(url, False)
    assert says in str(err.value)


def test_accepted_hosts_are_the_host_the_client_parses() -> None:
    t = parse_target("HTTPS://Push.Example.COM:8443/a\\b".replace("\\", "/"))
    assert (t.scheme, t.host, t.port, t.address) == ("https", "push.example.com", 8443, None)
    assert t.url.host_str == "push.example.com"
    v6 = parse_target("https://[2606:4700::1111]/x")
    assert v6.address == ipaddress.ip_address("2606:4700::1111") and v6.port == 443


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("100.64.1.1", "a shared (carrier-grade NAT) address"),
        ("10.1.2.3", "a private address"),
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a private address"),
        ("::ffff:10.0.0.1", "an IPv6 form of a private address"),
        ("2002:7f00:1::", "an IPv6 form of a loopback address"),
        ("64:ff9b::a9fe:a9fe", "an IPv6 form of a link-local address"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a private address"),
        ("ff02::1", "a multicast address"),
        ("fe80::1", "a link-local address"),
        ("8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert non_public(ipaddress.ip_address(address)) == kind


# ------------------------------------------------------------------ WNS channel URIs


@pytest.mark.parametrize("allow_lab", [False, True])
def test_wns_channel_uri_with_a_backslash_is_refused(allow_lab: bool) -> None:
    """Python's parser read a notify.windows.com host here; the HTTP client connects to
    evil.example and would hand it the app's WNS access token."""
    with pytest.raises(ValueError, match="backslash"):
        wns_token("https://evil.example\\.notify.windows.com/?token=x", allow_lab=allow_lab)


async def test_a_stored_wns_channel_uri_with_a_backslash_is_not_sent_to() -> None:
    """A device stored before the registration check existed: nothing is posted to it."""
    transport = MockTransport(lambda _req: json_response(200, {"access_token": "t", "expires_in": 3600}))
    wns = await WnsProvider.create({"package_sid": "ms-app://s-1", "client_secret": "s"}, transport)
    rendered = wns_render(Notification(title="t", body="b"), ProviderOverrides(), 0.0)
    [result] = await wns.send_batch(
        rendered, [Target("r1", "https://evil.example\\.notify.windows.com/?t=x")]
    )
    assert result.outcome is Outcome.DEVICE_TERMINAL and result.error_code == "invalid_channel_uri"
    assert [r.url for r in transport.requests] == ["https://login.live.com/accesstoken.srf"]


# ------------------------------------------------------------------ connect time


class Resolver:
    """A scripted DNS: name → addresses; counts look-ups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return self.table[host]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_names_are_resolved_and_non_public_answers_refused() -> None:
    dns = Resolver({"internal.example": ["10.0.0.7"], "push.example": ["93.184.216.34"]})
    policy = OutboundPolicy(resolver=dns)
    with pytest.raises(
        OutboundRefused, match=r"internal\.example resolves to an address that is a private"
    ) as err:
        await policy.route("https://internal.example/x")
    assert "allow_networks" in str(err.value) and "10.0.0.7" not in str(err.value)
    route = await policy.route("https://push.example/x")
    assert route.pin == ("push.example", 443, "93.184.216.34") and route.url.host_str == "push.example"


async def test_a_mixed_answer_pins_the_public_address() -> None:
    policy = OutboundPolicy(resolver=Resolver({"rebind.example": ["127.0.0.1", "93.184.216.34", "10.0.0.1"]}))
    route = await policy.route("https://rebind.example/x")
    assert route.pin == ("rebind.example", 443, "93.184.216.34")


async def test_allowances_cover_only_what_they_name() -> None:
    dns = Resolver({"mock.corp": ["10.20.0.5"], "db.corp": ["10.30.0.5"], "lab.test": ["127.0.0.1"]})
    networks = (ipaddress.ip_network("10.20.0.0/16"),)
    policy = OutboundPolicy(Allowance(networks=networks), resolver=dns)
    assert (await policy.route("https://mock.corp/x")).pin == ("mock.corp", 443, "10.20.0.5")
    for url in ("https://db.corp/x", "https://lab.test/x", "https://127.0.0.1/x", "http://mock.corp/x"):
        with pytest.raises(OutboundRefused):
            await policy.route(url)
    lab = OutboundPolicy(Allowance(lab=True), resolver=dns)
    assert (await lab.route("http://127.0.0.1:9/x")).pin is None
    assert (await lab.route("http://lab.test:9/x")).pin == ("lab.test", 9, "127.0.0.1")
    with pytest.raises(OutboundRefused, match="private"):
        await lab.route("http://10.0.0.1/x")


async def test_decisions_are_cached_per_origin_and_names_resolved_again_after_the_ttl() -> None:
    clock = Clock()
    dns = Resolver({"push.example": ["93.184.216.34", "93.184.216.35"]})
    policy = OutboundPolicy(resolver=dns, dns_cache_seconds=30, clock=clock)
    first = await policy.route("https://push.example/a")
    await policy.route("https://push.example/b?x=1")
    assert dns.calls == ["push.example"]
    clock.now += 31
    dns.table["push.example"] = ["93.184.216.35", "93.184.216.34"]
    again = await policy.route("https://push.example/c")
    assert dns.calls == ["push.example"] * 2
    assert again.pin == first.pin, "the pinned address is kept while the name still has it"
    # A rotating answer keeps the pin for a while (no new pool per look-up), then moves on.
    dns.table["push.example"] = ["93.184.216.99"]
    clock.now += 31
    assert (await policy.route("https://push.example/d")).pin == first.pin
    clock.now += 300
    assert (await policy.route("https://push.example/e")).pin == ("push.example", 443, "93.184.216.99")
    dns.table["push.example"] = ["127.0.0.1"]
    clock.now += 31
    with pytest.raises(OutboundRefused):
        await policy.route("https://push.example/f")


async def test_a_fan_out_to_a_new_host_resolves_it_once() -> None:
    dns = Resolver({"push.example": ["93.184.216.34"]})

    async def slow(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(0.01)
        return await dns(host, port)

    policy = OutboundPolicy(resolver=slow)
    routes = await asyncio.gather(*(policy.route(f"https://push.example/{i}") for i in range(50)))
    assert dns.calls == ["push.example"] and {r.pin for r in routes} == {
        ("push.example", 443, "93.184.216.34")
    }


async def test_a_refusal_reads_the_same_whatever_the_port() -> None:
    """Delivery errors must not tell an open port from a closed one (the port scanner)."""
    policy = OutboundPolicy(resolver=Resolver({"internal.example": ["10.0.0.7"]}))
    texts = set()
    for url in ("https://127.0.0.1:1/x", "https://127.0.0.1:22/x", "https://127.0.0.1:8686/x"):
        with pytest.raises(OutboundRefused) as err:
            await policy.route(url)
        texts.add(str(err.value))
    assert len(texts) == 1 and "8686" not in texts.pop()


async def test_a_name_that_does_not_resolve_is_a_network_error_not_a_refusal() -> None:
    policy = OutboundPolicy(resolver=Resolver({}))
    with pytest.raises(TransportError) as err:
        await policy.route("https://nowhere.example/x")
    assert not isinstance(err.value, OutboundRefused)


async def test_a_backslash_after_a_cached_origin_is_still_refused() -> None:
    policy = OutboundPolicy(resolver=Resolver({"push.example": ["93.184.216.34"]}))
    await policy.route("https://push.example/ok")
    with pytest.raises(OutboundRefused, match="backslash"):
        await policy.route("https://push.example/a\\b")


# ------------------------------------------------------------------ what a refusal becomes


def test_a_refusal_is_the_targets_final_outcome_without_a_breaker() -> None:
    refused = transport_failure(OutboundRefused("refused: x"))
    assert (refused.outcome, refused.error_code) == (Outcome.PAYLOAD, "outbound_refused")
    assert not refused.outcome.retryable
    network = transport_failure(TransportError("reset"))
    assert (network.outcome, network.error_code) == (Outcome.PROVIDER_TRANSIENT, "network")


async def test_a_refused_token_endpoint_is_outbound_refused_not_a_credential_error() -> None:
    def refuse(_req: HttpRequest) -> Exception:
        return OutboundRefused("refused: 10.0.0.7 is a private address")

    oauth = ClientCredentials(MockTransport(refuse), "https://10.0.0.7/token", {"a": "b"}, name="hms[1]")
    with pytest.raises(OAuthError) as err:
        await oauth.get()
    result = err.value.result()
    assert (result.outcome, result.error_code) == (Outcome.PAYLOAD, "outbound_refused")


async def test_a_foreign_token_endpoints_answer_is_not_repeated() -> None:
    body = {"error": "internal", "error_description": "db password is hunter2\nFAKE LOG LINE"}
    transport = MockTransport(lambda _req: json_response(500, body))
    oauth = ClientCredentials(transport, "https://mock.corp/token", {"a": "b"}, name="hms[1]", foreign=True)
    with pytest.raises(OAuthError) as err:
        await oauth.get()
    assert "hunter2" not in str(err.value) and "500" in str(err.value)
    own = ClientCredentials(transport, "https://oauth-login.cloud.huawei.com/t", {"a": "b"}, name="hms[1]")
    with pytest.raises(OAuthError) as err:
        await own.get()
    assert "hunter2" in str(err.value) and "\n" not in str(err.value)


def test_foreign_answers_keep_the_class_status_and_a_short_code() -> None:
    answer = SendResult(Outcome.CREDENTIAL, error_code="<html>" * 20, error_message="secret internals")
    shown = foreign_answer(answer, 401)
    assert (shown.outcome, shown.error_code) == (Outcome.CREDENTIAL, "http_401")
    assert shown.error_message is not None and "internals" not in shown.error_message
    assert foreign_answer(SendResult(Outcome.PAYLOAD, error_code="80100003"), 400).error_code == "80100003"
    assert is_foreign("https://mock.corp/x", frozenset({"push-api.cloud.huawei.com"}))
    assert not is_foreign("https://push-api.cloud.huawei.com/x", frozenset({"push-api.cloud.huawei.com"}))
    assert not is_foreign("http://127.0.0.1:9/hms", frozenset())
    assert (
        bounded("a\x1b[31mb\n" + "x" * 500).startswith("a\\x1b[31mb\\x0a") and len(bounded("x" * 500)) == 300
    )


async def test_provider_urls_from_the_config_are_read_as_the_client_reads_them() -> None:
    with pytest.raises(ProviderConfigError, match=r"hms.token_url: must not contain a backslash"):
        await HmsProvider.create(
            {"app_id": "1", "client_secret": "s", "token_url": "https://evil.example\\.huawei.com/t"},
            MockTransport(lambda _r: json_response(200, {})),
        )


# ------------------------------------------------------------------ settings


def test_outbound_settings(tmp_path: object) -> None:
    env = {
        "PUSHGATE_OUTBOUND_ALLOW_NETWORKS": '["10.20.0.0/16", "fd00:1::/64"]',
        "PUSHGATE_OUTBOUND_UPLOAD_HOSTS": '["push.example.com", "*.corp.example"]',
    }
    s = load_settings(None, env=env)
    allow = s.outbound.allowance(s.devices.allow_loopback_endpoints)
    assert allow.networks == (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("fd00:1::/64"))
    assert not allow.lab and s.outbound.upload_hosts == ["push.example.com", "*.corp.example"]
    with pytest.raises(ConfigError, match=r"outbound.*allow_networks: 'intranet' is not a network in CIDR"):
        load_settings(None, env={"PUSHGATE_OUTBOUND_ALLOW_NETWORKS": '["intranet"]'})
    with pytest.raises(ConfigError, match=r"outbound.upload_hosts"):
        load_settings(None, env={"PUSHGATE_OUTBOUND_UPLOAD_HOSTS": '["https://push.example.com/"]'})


@pytest.mark.parametrize("uploaded", [True, False])
async def test_an_uploaded_credentials_foreign_host_is_not_quoted(uploaded: bool) -> None:
    """A tenant's credential may name another host only where the operator allowed it; even
    then what that host answers reaches the tenant as a class, a status and a short code."""

    def answer(req: HttpRequest) -> HttpResponse:
        if req.url.startswith("https://oauth-login.cloud.huawei.com/"):
            return json_response(200, {"access_token": "tok", "expires_in": 3600})
        return json_response(503, {"code": "internal", "msg": "db password is hunter2"})

    hms = await HmsProvider.create(
        {
            "app_id": "1",
            "client_secret": "s",
            "base_url": "https://push.corp.example/hms",
            "uploaded": uploaded,
        },
        MockTransport(answer),
    )
    rendered = hms_render(Notification(title="t"), ProviderOverrides(), 0.0)
    [result] = await hms.send_batch(rendered, [Target("r", "tok-1")])
    assert result.outcome is Outcome.PROVIDER_TRANSIENT
    assert ("hunter2" in (result.error_message or "")) is not uploaded


async def test_a_config_url_pushgate_would_refuse_stops_the_start() -> None:
    """Better a clear start-up error than every delivery failing with outbound_refused."""
    env = {"PUSHGATE_HMS_APP_ID": "1", "PUSHGATE_HMS_CLIENT_SECRET": "s"}
    with pytest.raises(
        ConfigError, match=r"hms\.token_url: 10\.0\.0\.5 is a private address.*allow_networks"
    ):
        await check_credentials(
            load_settings(None, env={**env, "PUSHGATE_HMS_TOKEN_URL": "https://10.0.0.5/t"})
        )
    with pytest.raises(ConfigError, match=r"hms\.base_url: must use https://"):
        await check_credentials(
            load_settings(None, env={**env, "PUSHGATE_HMS_BASE_URL": "http://push.example/"})
        )
    allowed = {
        **env,
        "PUSHGATE_HMS_TOKEN_URL": "https://10.0.0.5/t",
        "PUSHGATE_OUTBOUND_ALLOW_NETWORKS": '["10.0.0.0/8"]',
    }
    await check_credentials(load_settings(None, env=allowed))


def test_a_host_longer_than_a_dns_name_is_refused() -> None:
    """A 327-character host passed the label checks; its origin overflowed the breaker's key."""
    label = "a" * 63
    long_host = ".".join([label] * 5) + ".example"
    with pytest.raises(UrlRefused, match="at most 253"):
        parse_target(f"https://{long_host}/push")
    fits = ".".join([label] * 3) + ".example.com"
    assert parse_target(f"https://{fits}/push").host == fits


def test_breaker_origins_are_read_with_the_transports_parser() -> None:
    """The WNS origin leaves out the default port (docs: scheme://host[:port]); Web Push and
    WNS both read the host as the HTTP client does."""
    wns = registry.get("wns").origin_of
    assert wns is not None
    assert wns("https://db5.notify.windows.com/?token=abc") == "https://db5.notify.windows.com"
    assert wns("https://db5.notify.windows.com:8443/?token=abc") == "https://db5.notify.windows.com:8443"
    assert wns("https://evil.example\\.notify.windows.com/") is None


def test_web_push_origins_are_read_with_the_transports_parser() -> None:
    webpush = registry.get("webpush").origin_of
    assert webpush is not None
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    p256dh = b64url_encode(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    keys = {"p256dh": p256dh, "auth": b64url_encode(b"a" * 16)}
    subscription = {"endpoint": "https://push.example.com:443/send/abc", "keys": keys}
    token = registry.get("webpush").normalize_token(subscription, False)[0]
    assert webpush(token) == "https://push.example.com"
