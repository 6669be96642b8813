"""The rules behind API keys, without a server: which scope each route needs, the wrong-key
throttle, the per-key rate, and the default connection cap."""

from __future__ import annotations

import pytest

from pushgate.api.connections import default_max_connections
from pushgate.api.throttle import FailureThrottle, KeyRateLimiter, client_key, retry_after_header
from pushgate.config import AuthSettings, Settings
from pushgate.domain.scopes import ALL_SCOPES, Scope, UnknownScope, allows, parse_scopes, required_scope
from pushgate.server import create_app

#: Every /v1 route and method with the scope it must need: a route added without a line here
#: fails the test below, so its scope is a decision, not an accident.
EXPECTED = {
    ("GET", "/v1/devices"): Scope.READ,
    ("POST", "/v1/devices"): Scope.REGISTER,
    ("POST", "/v1/devices/batch"): Scope.REGISTER,
    ("POST", "/v1/devices/remove"): Scope.REGISTER,
    ("POST", "/v1/devices/update"): Scope.REGISTER,
    ("POST", "/v1/devices/search"): Scope.READ,
    ("POST", "/v1/audience/count"): Scope.READ,
    ("GET", "/v1/stats/devices"): Scope.READ,
    ("GET", "/v1/devices/{device_id:str}"): Scope.READ,
    ("PATCH", "/v1/devices/{device_id:str}"): Scope.REGISTER,
    ("DELETE", "/v1/devices/{device_id:str}"): Scope.REGISTER,
    ("PUT", "/v1/devices/{device_id:str}/channels/{channel:str}"): Scope.REGISTER,
    ("DELETE", "/v1/devices/{device_id:str}/channels/{channel:str}"): Scope.REGISTER,
    ("POST", "/v1/devices/{device_id:str}/token"): Scope.REGISTER,
    ("POST", "/v1/client-tokens"): Scope.REGISTER,
    ("GET", "/v1/channels/private"): Scope.READ,
    ("PUT", "/v1/channels/{channel:str}/private"): Scope.ADMIN,
    ("DELETE", "/v1/channels/{channel:str}/private"): Scope.ADMIN,
    ("GET", "/v1/channels"): Scope.READ,
    ("GET", "/v1/channels/{channel:str}/devices"): Scope.READ,
    ("GET", "/v1/user-channels"): Scope.READ,
    ("POST", "/v1/users/{user:str}/channels"): Scope.REGISTER,
    ("POST", "/v1/publish"): Scope.PUBLISH,
    ("POST", "/v1/receipts"): Scope.REGISTER,
    ("POST", "/v1/publish/preview"): Scope.PUBLISH,
    ("POST", "/v1/publish/batch"): Scope.PUBLISH,
    ("GET", "/v1/publishes"): Scope.READ,
    ("GET", "/v1/publishes/{publish_id:str}"): Scope.READ,
    ("GET", "/v1/publishes/{publish_id:str}/deliveries"): Scope.READ,
    ("POST", "/v1/publishes/{publish_id:str}/cancel"): Scope.PUBLISH,
    ("PATCH", "/v1/publishes/{publish_id:str}"): Scope.PUBLISH,
    ("GET", "/v1/campaigns/{campaign:str}/stats"): Scope.READ,
    ("GET", "/v1/dead-letters"): Scope.READ,
    ("POST", "/v1/dead-letters/replay"): Scope.PUBLISH,
    ("GET", "/v1/health/providers"): Scope.READ,
    ("GET", "/v1/credentials"): Scope.ADMIN,
    ("PUT", "/v1/credentials/{provider:str}"): Scope.ADMIN,
    ("DELETE", "/v1/credentials/{provider:str}"): Scope.ADMIN,
    ("GET", "/v1/keys"): Scope.ADMIN,
    ("GET", "/v1/compat/sockudo/keys"): Scope.ADMIN,
    ("POST", "/v1/compat/sockudo/keys"): Scope.ADMIN,
    ("POST", "/v1/compat/sockudo/keys/{auth_key:str}/rotate"): Scope.ADMIN,
    ("DELETE", "/v1/compat/sockudo/keys/{auth_key:str}"): Scope.ADMIN,
    ("POST", "/v1/keys"): Scope.ADMIN,
    ("DELETE", "/v1/keys/{key_id:str}"): Scope.ADMIN,
    ("POST", "/v1/realtime/tokens"): Scope.PUBLISH,
    ("GET", "/v1/realtime/users/{user:str}"): Scope.READ,
    ("GET", "/v1/realtime/secret"): Scope.ADMIN,
    ("POST", "/v1/realtime/secret/rotate"): Scope.ADMIN,
    ("POST", "/v1/webhooks"): Scope.ADMIN,
    ("GET", "/v1/webhooks"): Scope.READ,
    ("GET", "/v1/webhooks/{webhook_id:str}"): Scope.READ,
    ("PATCH", "/v1/webhooks/{webhook_id:str}"): Scope.ADMIN,
    ("DELETE", "/v1/webhooks/{webhook_id:str}"): Scope.ADMIN,
    ("POST", "/v1/webhooks/{webhook_id:str}/secret"): Scope.ADMIN,
    ("GET", "/v1/policy"): Scope.READ,
    ("PUT", "/v1/policy"): Scope.ADMIN,
    ("DELETE", "/v1/policy"): Scope.ADMIN,
    ("GET", "/v1/categories"): Scope.READ,
    ("POST", "/v1/categories"): Scope.ADMIN,
    ("GET", "/v1/categories/{category:str}"): Scope.READ,
    ("PUT", "/v1/categories/{category:str}"): Scope.ADMIN,
    ("DELETE", "/v1/categories/{category:str}"): Scope.ADMIN,
    ("GET", "/v1/users/{user:str}/preferences"): Scope.READ,
    ("PUT", "/v1/users/{user:str}/preferences"): Scope.REGISTER,
    ("PUT", "/v1/users/{user:str}/preferences/{category:str}"): Scope.REGISTER,
    ("DELETE", "/v1/users/{user:str}/preferences/{category:str}"): Scope.REGISTER,
    ("GET", "/v1/users/{user:str}/quiet_hours"): Scope.READ,
    ("PUT", "/v1/users/{user:str}/quiet_hours"): Scope.REGISTER,
    ("DELETE", "/v1/users/{user:str}/quiet_hours"): Scope.REGISTER,
    ("GET", "/v1/templates"): Scope.READ,
    ("POST", "/v1/templates"): Scope.ADMIN,
    ("GET", "/v1/templates/{template_id:str}"): Scope.READ,
    ("PUT", "/v1/templates/{template_id:str}"): Scope.ADMIN,
    ("DELETE", "/v1/templates/{template_id:str}"): Scope.ADMIN,
}


def _concrete(template: str) -> str:
    """A path the template matches (what ``required_scope`` sees at request time)."""
    return "/".join("x1" if part.startswith("{") else part for part in template.split("/"))


def test_every_v1_route_needs_the_scope_the_table_says() -> None:
    app = create_app(Settings())
    routes = {
        (method, route.path)
        for route in app.routes
        # Sentori's compat routes (/v1/push/...) carry their scope on each handler (its own test).
        if route.path.startswith("/v1") and not route.path.startswith("/v1/push/")
        for method in route.methods
        if method != "OPTIONS"
    }
    assert routes == set(EXPECTED), "add the new route to EXPECTED with the scope it needs"
    wrong = {
        (m, p): required_scope(m, _concrete(p))
        for (m, p), scope in EXPECTED.items()
        if required_scope(m, _concrete(p)) != scope
    }
    assert not wrong


def test_an_unknown_write_needs_admin_and_admin_allows_everything() -> None:
    assert required_scope("POST", "/v1/something-new") is Scope.ADMIN
    assert required_scope("GET", "/v1/keys/abc") is Scope.ADMIN
    assert required_scope("GET", "/v1/publishesx") is Scope.READ
    assert required_scope("POST", "/v1/publishesx") is Scope.ADMIN
    assert all(allows(frozenset({Scope.ADMIN}), s) for s in Scope)
    assert not allows(frozenset({Scope.READ, Scope.PUBLISH}), Scope.REGISTER)
    assert allows(frozenset({Scope.REGISTER}), Scope.REGISTER)


def test_scopes_parse_from_commas_and_spaces_and_unknown_ones_are_named() -> None:
    assert parse_scopes(["publish,read", " register "]) == {Scope.PUBLISH, Scope.READ, Scope.REGISTER}
    assert parse_scopes(["admin publish read register"]) == ALL_SCOPES
    with pytest.raises(UnknownScope, match=r"'write'.*admin, publish, read, register"):
        parse_scopes(["read,write"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: FailureThrottle, address: str) -> None:
    """One wrong key from ``address``: reserved, looked up, found wrong."""
    assert throttle.reserve(address)
    throttle.release(address, failed=True)


def test_an_address_is_blocked_after_max_failures_within_the_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(
        AuthSettings(max_failures=3, failure_window_seconds=10, block_seconds=60), clock
    )
    for _ in range(2):
        fail(throttle, "203.0.113.5")
    assert throttle.retry_after("203.0.113.5") == 0
    fail(throttle, "203.0.113.5")
    assert throttle.retry_after("203.0.113.5") == pytest.approx(60)
    assert not throttle.reserve("203.0.113.5")
    assert throttle.retry_after("203.0.113.6") == 0 and throttle.reserve("203.0.113.6")
    clock.now += 59
    assert throttle.retry_after("203.0.113.5") == pytest.approx(1)
    clock.now += 1
    assert throttle.retry_after("203.0.113.5") == 0 and throttle.reserve("203.0.113.5")


def test_lookups_under_way_count_so_a_burst_of_guesses_is_not_all_checked() -> None:
    throttle = FailureThrottle(AuthSettings(max_failures=3), Clock())
    assert [throttle.reserve("192.0.2.9") for _ in range(5)] == [True, True, True, False, False]
    throttle.release("192.0.2.9", failed=False)  # a right key frees its place
    assert throttle.reserve("192.0.2.9")
    for _ in range(3):
        throttle.release("192.0.2.9", failed=True)
    assert throttle.retry_after("192.0.2.9") > 0


def test_failures_spread_wider_than_the_window_never_block() -> None:
    clock = Clock()
    throttle = FailureThrottle(AuthSettings(max_failures=3, failure_window_seconds=10), clock)
    for _ in range(10):
        fail(throttle, "198.51.100.1")
        clock.now += 6
        assert throttle.retry_after("198.51.100.1") == 0


def test_zero_max_failures_turns_the_throttle_off() -> None:
    throttle = FailureThrottle(AuthSettings(max_failures=0), Clock())
    for _ in range(1000):
        fail(throttle, "192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 0


def test_ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "-"


def test_a_key_gets_its_rate_and_a_burst_of_one_second() -> None:
    clock = Clock()
    limiter = KeyRateLimiter(5, clock)
    assert [limiter.take("k1") for _ in range(5)] == [0.0] * 5
    wait = limiter.take("k1")
    assert wait == pytest.approx(0.2)
    assert limiter.take("k2") == 0.0  # per key
    clock.now += 0.2
    assert limiter.take("k1") == 0.0
    assert KeyRateLimiter(0, clock).take("k1") == 0.0  # 0: no limit
    assert retry_after_header(0.2) == {"Retry-After": "1"}
    assert retry_after_header(2.1) == {"Retry-After": "3"}


def test_the_rate_limiter_table_stays_bounded() -> None:
    clock = Clock()
    limiter = KeyRateLimiter(1, clock, max_buckets=100)
    for n in range(1000):  # many devices, each once: every bucket is spent
        limiter.take(f"dev-{n}")
    assert len(limiter._buckets) <= 100
    assert limiter.take("dev-999") > 0  # the most recent keys keep their state
    clock.now += 2  # every bucket refilled: the next prune drops them all (a full bucket = none)
    for n in range(100):
        limiter.take(f"new-{n}")
    assert len(limiter._buckets) <= 100 and all(k.startswith("new-") for k in limiter._buckets)


def test_the_default_connection_cap_stays_below_the_descriptor_limit() -> None:
    assert default_max_connections(1024) == 768
    assert default_max_connections(256) == 192
    assert default_max_connections(100_000) == 100_000 - 4096
    assert 0 < default_max_connections() < 1_000_000
