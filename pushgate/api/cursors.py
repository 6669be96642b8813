"""Opaque, validated page cursors: one format for every list route.

A list route used to hand out its raw keyset key (a device id, a channel name, JSON of a pair),
so any string was accepted back: garbage silently restarted a listing somewhere, and a cursor of
5,000 ``[`` made the JSON decoder recurse until the process answered 500. A cursor is now the
base64url of a JSON array of exactly the keys its route pages by, decoded with msgspec into
``list[str]`` (no recursion: a nested array is a type error at its first ``[``), with bounded
length; anything else is a 400 that names ``cursor``.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from pushgate.api.errors import bad_request

#: Longer than any cursor pushgate hands out (keys are ids and names of at most 200 characters).
MAX_CURSOR_LENGTH = 1024
_KEYS = msgspec.json.Decoder(list[str])


def encode(*keys: str) -> str:
    """The cursor that resumes a listing after ``keys``."""
    return base64.urlsafe_b64encode(msgspec.json.encode(list(keys))).decode().rstrip("=")


def encode_next(key: str | tuple[str, ...] | None) -> str | None:
    """``next_cursor`` for a page whose last key is ``key`` (None: the last page)."""
    if key is None:
        return None
    return encode(*key) if isinstance(key, tuple) else encode(key)


def decode(cursor: str | None, parts: int = 1) -> tuple[str, ...] | None:
    """The keys in a cursor this API handed out; 400 for anything else."""
    if cursor is None:
        return None
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise _bad()
    try:
        keys = _KEYS.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise _bad() from None
    if len(keys) != parts or not all(keys):
        raise _bad()
    return tuple(keys)


def decode_one(cursor: str | None) -> str | None:
    """The single key of a one-key cursor (or None)."""
    keys = decode(cursor, 1)
    return None if keys is None else keys[0]


def _bad() -> Exception:
    return bad_request("cursor: not a cursor this endpoint returned (pass next_cursor unchanged)")
