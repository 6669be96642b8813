"""Sockudo's Pusher-style request signing (``domain/pusher_signing.py``) against vectors computed
here with hmac/hashlib from the algorithm as docs/compat.md states it."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pushgate.domain import pusher_signing as ps

SECRET = "7ad3773142a6692b25b8"
PATH = "/apps/app-id/push/publish"
NOW = 1_700_000_000
BODY = b'{"recipients":[{"type":"channel","channel":"orders"}],"payload":{"title":"hi"}}'


def expected(method: str, path: str, canonical: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{method}\n{path}\n{canonical}".encode(), hashlib.sha256).hexdigest()


def params(
    method: str = "POST", body: bytes = BODY, extra: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    q = {"auth_key": "key1", "auth_timestamp": str(NOW), "auth_version": "1.0", **(extra or {})}
    if body:
        q["body_md5"] = hashlib.md5(body).hexdigest()
    canonical = "&".join(f"{k.lower()}={q[k]}" for k in sorted(q, key=lambda k: k.lower().encode()))
    q["auth_signature"] = expected(method, PATH, canonical)
    return list(q.items())


def refusal(method: str, q: list[tuple[str, str]], body: bytes = BODY, now: float = NOW) -> str | None:
    return ps.refusal(method=method, path=PATH, params=q, body=body, secret=SECRET, now=now)


def test_canonical_query_lowercases_sorts_by_bytes_and_drops_the_signature() -> None:
    q = [("mode", "sync"), ("Limit", "5"), ("auth_signature", "x"), ("B", "a b"), ("a", "1")]
    assert ps.canonical_query(q) == "a=1&b=a b&limit=5&mode=sync"
    assert ps.canonical_query([("_x", "1"), ("Z", "2")]) == "_x=1&z=2"


def test_signature_vector() -> None:
    canonical = (
        f"auth_key=key1&auth_timestamp={NOW}&auth_version=1.0&body_md5={hashlib.md5(BODY).hexdigest()}"
    )
    q = params()
    assert dict(q)["auth_signature"] == expected("POST", PATH, canonical)
    assert ps.sign(SECRET, "post", PATH, q) == expected("POST", PATH, canonical)


def test_a_correct_request_passes() -> None:
    assert refusal("POST", params()) is None
    assert refusal("GET", params("GET", b"", {"limit": "10", "cursor": "abc"}), b"") is None
    assert refusal("DELETE", params("DELETE", b""), b"") is None
    # Inside the window on both sides.
    assert refusal("POST", params(), now=NOW + 600) is None
    assert refusal("POST", params(), now=NOW - 600) is None


@pytest.mark.parametrize(
    ("case", "q", "method", "body", "now", "why"),
    [
        ("wrong signature", [*params()[:-1], ("auth_signature", "0" * 64)], "POST", BODY, NOW, "signature"),
        ("stale", params(), "POST", BODY, NOW + 601, "600"),
        ("future", params(), "POST", BODY, NOW - 601, "600"),
        ("no body_md5", params(extra={}, body=b""), "POST", BODY, NOW, "required"),
        ("wrong body", params(), "POST", BODY + b" ", NOW, "body_md5"),
        ("md5 on GET", params("GET", BODY), "GET", b"", NOW, "must not"),
        ("md5 on empty POST", params("POST", BODY), "POST", b"", NOW, "must not"),
        (
            "changed param",
            [
                *params("GET", b"", {"limit": "10"})[:3],
                ("limit", "11"),
                params("GET", b"", {"limit": "10"})[-1],
            ],
            "GET",
            b"",
            NOW,
            "signature",
        ),
        ("missing key", [p for p in params() if p[0] != "auth_key"], "POST", BODY, NOW, "auth_key"),
        (
            "bad timestamp",
            [("auth_timestamp", "soon"), *[p for p in params() if p[0] != "auth_timestamp"]],
            "POST",
            BODY,
            NOW,
            "Unix",
        ),
    ],
)
def test_each_wrong_request_is_refused(
    case: str, q: list[tuple[str, str]], method: str, body: bytes, now: float, why: str
) -> None:
    reason = refusal(method, q, body, now)
    assert reason is not None and why in reason, (case, reason)


def test_another_secret_or_path_or_method_fails() -> None:
    q = params()
    assert ps.refusal(method="POST", path=PATH, params=q, body=BODY, secret=SECRET + "x", now=NOW) is not None
    assert ps.refusal(method="POST", path=PATH + "x", params=q, body=BODY, secret=SECRET, now=NOW) is not None
    assert ps.refusal(method="PUT", path=PATH, params=q, body=BODY, secret=SECRET, now=NOW) is not None
