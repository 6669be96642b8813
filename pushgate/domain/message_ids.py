"""Message ids in payloads (docs/receipts.md): ``pushgate: {"p": publish id, "d": delivery id}``.

A device reports receipts (``POST /v1/receipts``) about the delivery record it was sent, so
every payload carries that record's id: ``p`` is the publish, ``d`` the record's
``recipient_id`` (``dev_…`` for a registered device, ``tok_…`` for a raw token, ``nat_…`` for a
provider-side audience).

Why splicing: a fan-out renders once per (publish, provider) and the providers send the same
bytes to every target. The ids of a publish are known once per rendering (``p``) but ``d``
changes per target, so the encoded body is cut once into a :class:`Splice` (the bytes before
and after ``d``) and each target's body is ``head + recipient id + tail``: no re-rendering, no
re-encoding, one ``bytes.join`` per target. The ``pushgate`` key is inserted *structurally*
(as the first key of the object that carries it, encoded apart from the rest), never by
searching the encoded bytes for a marker, so no notification content can move it.

Ids are ``[a-z0-9_]`` (``domain/ids.py``, ``store/audience.py``): they need no escaping in JSON,
even inside a JSON string (FCM's ``data`` values are strings). An id outside that alphabet is
never spliced (:func:`safe_id`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec

#: The key every payload carries; reserved in ``notification.data`` (admission refuses it).
KEY = "pushgate"
#: Placeholders of the longest ids (``pub_``/``tok_`` + 32 characters): admission's size checks
#: count the ids with these, so a payload that fits at admission still fits with real ids.
MAX_PUBLISH_ID = "pub_" + "0" * 32
MAX_DELIVERY_ID = "tok_" + "0" * 32
#: What ``POST /v1/publish/preview`` shows in place of the real ids.
PREVIEW_PUBLISH_ID = "<publish id>"
PREVIEW_DELIVERY_ID = "<delivery id>"

_ID = re.compile(r"[a-z0-9_]{1,64}")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def safe_id(value: str) -> bool:
    """True for an id that can be spliced into JSON (and a JSON string) as it is."""
    return _ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Stamped:
    """A rendering to be sent with message ids: the provider adds ``pushgate`` to each body.

    The dispatcher hands providers this wrapper (``engine/rendering.py:send_groups``) instead of
    stamping the cached rendering, so one rendering serves every target and dry runs and
    previews keep reading the plain rendering.
    """

    rendered: Any
    publish_id: str


def unwrap(rendered: Any) -> tuple[Any, str | None]:
    """``(rendering, publish id)``; the id is None when the payload carries no ids (an app that
    opted out, or a caller that sends a plain rendering)."""
    if isinstance(rendered, Stamped):
        return rendered.rendered, rendered.publish_id if safe_id(rendered.publish_id) else None
    return rendered, None


def for_preview(rendered: Any) -> tuple[Any, str | None]:
    """:func:`unwrap` for previews, whose ids are placeholders (``<publish id>``)."""
    if isinstance(rendered, Stamped):
        return rendered.rendered, rendered.publish_id
    return rendered, None


@dataclass(frozen=True, slots=True)
class Splice:
    """One encoded body cut around the delivery id: ``head + recipient_id + tail``."""

    head: bytes
    tail: bytes = b""
    #: False: the body carries no ``d`` (ids off, or a body that cannot carry them): ``head`` is
    #: the whole body for every target.
    spliced: bool = True

    def body(self, recipient_id: str) -> bytes:
        if not self.spliced or not safe_id(recipient_id):
            return self.head + self.tail if self.spliced else self.head
        return b"".join((self.head, recipient_id.encode("ascii"), self.tail))


def whole(body: bytes) -> Splice:
    """A body sent as it is to every target."""
    return Splice(body, spliced=False)


def object_value(publish_id: str) -> tuple[bytes, bytes]:
    """``{"p":"…","d":"`` and ``"}``: the ids as a JSON object, cut around ``d``."""
    return b'{"p":"' + publish_id.encode("ascii") + b'","d":"', b'"}'


def string_value(publish_id: str) -> tuple[bytes, bytes]:
    """The same object as a JSON *string* (FCM data values must be strings), cut around ``d``."""
    return b'"{\\"p\\":\\"' + publish_id.encode("ascii") + b'\\",\\"d\\":\\"', b'\\"}"'


def prepend(obj: bytes, value: tuple[bytes, bytes]) -> Splice:
    """Insert ``"pushgate": value`` as the first key of an encoded JSON object.

    A body that is not one JSON object (a raw override: braces at both ends are not enough), or
    that has its own ``pushgate`` key, is sent as it is (:func:`whole`). Checked once per
    rendering, by decoding it: a few microseconds for a body of a few kilobytes.
    """
    stripped = obj.strip()
    if not stripped.startswith(b"{") or not stripped.endswith(b"}"):
        return whole(obj)
    try:
        parsed = _decode(stripped)
    except msgspec.DecodeError:
        return whole(obj)
    if not isinstance(parsed, dict) or KEY in parsed:
        return whole(obj)
    rest = stripped[1:].lstrip()
    head = b'{"' + KEY.encode() + b'":' + value[0]
    return Splice(head, value[1] + (b"}" if rest == b"}" else b"," + rest))


def id_object(publish_id: str, delivery_id: str | None = None) -> dict[str, str]:
    """The ids as a mapping (previews; ``d`` absent for multicast providers)."""
    return {"p": publish_id} if delivery_id is None else {"p": publish_id, "d": delivery_id}


def with_publish_id(text: str, publish_id: str) -> str:
    """A JSON object text (HMS ``data``, MiPush ``payload``) with ``"pushgate": {"p": …}`` added:
    one request carries many tokens, so only the publish can be named. Text that is not a JSON
    object, or that has its own ``pushgate`` key, is returned as it is.

    The key is inserted into the text, which is never re-encoded: the app's data goes "as-is"
    (a re-encoding turned ``1e400`` into ``Infinity``, not JSON, and ``1e5`` into the longer
    ``100000.0``, past the size admission counted)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if not isinstance(parsed, dict) or KEY in parsed:
        return text
    # json.loads accepted it: only JSON whitespace surrounds the object's braces.
    rest = text.strip()[1:].lstrip()
    ids = json.dumps({KEY: id_object(publish_id)}, separators=(",", ":"))[:-1]
    return ids + ("}" if rest == "}" else "," + rest)


def overhead(*, string: bool = False, multicast: bool = False) -> int:
    """Bytes the ids add to a body at most (longest ids, plus the separating comma): what
    admission adds to each size check."""
    if multicast:
        return len(f'"{KEY}":{{"p":"{MAX_PUBLISH_ID}"}},'.encode())
    head, tail = string_value(MAX_PUBLISH_ID) if string else object_value(MAX_PUBLISH_ID)
    return len(f'"{KEY}":'.encode()) + len(head) + len(MAX_DELIVERY_ID) + len(tail) + 1


def reserved_key_error(data: dict[str, Any] | None) -> str | None:
    """The 400 message for ``notification.data`` that uses the reserved key, else None."""
    if data and KEY in data:
        return f"key {KEY!r} is reserved for message ids (docs/receipts.md): rename it"
    return None


def fcm_head(stamped: Any) -> Splice:
    """FCM: everything of the body before the target field, cut around the delivery id.

    With ids, ``data`` is encoded first and ``pushgate`` is its first entry (a JSON string, as
    FCM data values must be), so the cut is found by construction, not by searching the bytes.
    """
    rendered, publish_id = unwrap(stamped)
    encoded = _encode(rendered)
    if not encoded.startswith(b"{") or not encoded.endswith(b"}"):
        raise TypeError("rendered FCM message must be a JSON object")
    data = rendered.get("data", {})
    if publish_id is None or not isinstance(data, dict):
        return whole(b'{"message":' + encoded[:-1] + (b"," if len(encoded) > 2 else b""))
    rest = _encode({k: v for k, v in rendered.items() if k != "data"})[1:-1]
    own = _encode({k: v for k, v in data.items() if k != KEY})[1:-1]
    value_head, value_tail = string_value(publish_id)
    head = b'{"message":{"data":{"' + KEY.encode() + b'":' + value_head
    tail = value_tail + (b"," + own if own else b"") + b"}," + (rest + b"," if rest else b"")
    return Splice(head, tail)
