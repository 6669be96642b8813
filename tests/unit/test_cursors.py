"""Page cursors are opaque and validated: what a list route hands out comes back as the same
keys, and nothing else gets through (garbage, wrong arity, deep nesting, oversize)."""

from __future__ import annotations

import base64

import pytest

from pushgate.api import cursors
from pushgate.api.errors import ApiError


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_cursor_round_trips_its_keys() -> None:
    assert cursors.decode(cursors.encode("dev_1"), 1) == ("dev_1",)
    assert cursors.decode(cursors.encode("alice", "news/eu"), 2) == ("alice", "news/eu")
    assert cursors.decode_one(cursors.encode_next("pub_9")) == "pub_9"
    assert cursors.encode_next(None) is None and cursors.decode(None) is None
    # Opaque: not the raw key, and safe in a query string without escaping.
    c = cursors.encode("dev_1")
    assert "dev_1" not in c and set(c) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage!",
        "dev_660e91e297a95647f69713986",  # a raw key, as the old cursors were
        "[" * 5000,
        _b64(b"[" * 5000),  # nesting: a type error at the first level, never a recursion
        _b64(b'{"a": 1}'),
        _b64(b"[1, 2]"),
        _b64(b'["a", "b"]'),  # two keys where the route pages by one
        _b64(b'[""]'),
        _b64(b"\xff\xfe"),
        "A" * (cursors.MAX_CURSOR_LENGTH + 1),
    ],
)
def test_anything_else_is_a_400_naming_the_cursor(cursor: str) -> None:
    with pytest.raises(ApiError) as err:
        cursors.decode(cursor, 1)
    assert err.value.status == 400 and str(err.value.message).startswith("cursor:")
