"""Which routes a client token and a device token open (domain/client_scopes.py), without a
server: the table docs/clients.md gives, and the refusals' wording."""

from __future__ import annotations

import pytest

from pushgate.domain.client_scopes import (
    client_refusal,
    device_refusal,
    joined,
    looks_like_jwt,
    refused_joins,
)

OWN = "dev_own"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/devices/{OWN}"),
        ("HEAD", f"/v1/devices/{OWN}"),
        ("PATCH", f"/v1/devices/{OWN}"),
        ("DELETE", f"/v1/devices/{OWN}/"),
        ("PUT", f"/v1/devices/{OWN}/channels/news"),
        ("DELETE", f"/v1/devices/{OWN}/channels/a/b"),  # channel names may hold a slash
        ("POST", "/v1/receipts"),
    ],
)
def test_a_device_token_opens_its_own_routes(method: str, path: str) -> None:
    assert device_refusal(method, path, OWN) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/devices/dev_other"),
        ("PATCH", "/v1/devices/dev_other"),
        ("DELETE", "/v1/devices/dev_other"),
        ("PUT", "/v1/devices/dev_other/channels/news"),
        ("GET", f"/v1/devices/{OWN}x"),
    ],
)
def test_another_devices_routes_are_refused_alike(method: str, path: str) -> None:
    refusal = device_refusal(method, path, OWN)
    assert refusal == (
        f"this device token acts only on its own device ({OWN}): it cannot read or change another "
        "device; the app key can"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/devices"),
        ("POST", "/v1/devices"),
        ("POST", "/v1/devices/search"),
        ("POST", "/v1/devices/batch"),
        ("POST", f"/v1/devices/{OWN}/token"),
        ("PUT", f"/v1/devices/{OWN}"),
        ("GET", f"/v1/devices/{OWN}/channels"),
        ("PUT", f"/v1/devices/{OWN}/channels/"),
        ("POST", "/v1/publish"),
        ("POST", "/v1/client-tokens"),
        ("GET", "/v1/receipts"),
        ("PUT", "/v1/channels/news/private"),
    ],
)
def test_everything_else_is_refused_with_what_the_token_may_do(method: str, path: str) -> None:
    refusal = device_refusal(method, path, OWN)
    assert refusal is not None and refusal.startswith("a device token may only read, update and delete")
    assert f"not {method} {path}; that needs the app key" in refusal


def test_a_client_token_only_registers() -> None:
    assert client_refusal("POST", "/v1/devices") is None
    assert client_refusal("post", "/v1/devices/") is None
    for method, path in [("GET", "/v1/devices"), ("POST", "/v1/devices/batch"), ("PATCH", "/v1/devices/x")]:
        refusal = client_refusal(method, path)
        assert refusal is not None and "may only register a device (POST /v1/devices)" in refusal


def test_private_channels_join_only_when_named_and_leaving_is_free() -> None:
    private = {"vip", "staff"}
    assert refused_joins(["news", "vip", "staff"], private, ["vip"]) == ["staff"]
    assert refused_joins(["news"], private, []) == []
    assert refused_joins(["staff", "vip"], private, ["staff", "vip"]) == []
    assert joined(["news", "staff"], ["news", "sport"]) == {"sport"}  # staff left: no check
    assert joined(None, ["news"]) == {"news"}


def test_jwts_and_keys_are_told_apart() -> None:
    assert looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    assert not looks_like_jwt("pgk_" + "a" * 43)
    assert not looks_like_jwt("eyJ-only-two.parts")
    assert not looks_like_jwt("test-default-key-0123456789")
