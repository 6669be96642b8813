"""The splicing of message ids (``domain/message_ids.py``): one encoding per rendering, the
delivery id put in per target, the JSON valid and the content untouched whatever it holds."""

from __future__ import annotations

import json

import pytest

from pushgate.config import load_settings
from pushgate.domain import message_ids
from pushgate.domain.message_ids import Splice, Stamped, fcm_head, prepend, unwrap, with_publish_id

CONTENT = {"a": '"d":"', "b": '{"pushgate":{"p":"x"}}', "c": "é\\"}


def test_prepend_puts_the_ids_first_and_splices_each_target() -> None:
    body = json.dumps({"aps": {"alert": "x"}, **CONTENT}).encode()
    splice = prepend(body, message_ids.object_value("pub_1"))
    for rid in ("dev_a", "tok_" + "0" * 32):
        out = json.loads(splice.body(rid))
        assert next(iter(out)) == "pushgate" and out.pop("pushgate") == {"p": "pub_1", "d": rid}
        assert out == {"aps": {"alert": "x"}, **CONTENT}
    assert json.loads(prepend(b"{}", message_ids.object_value("pub_1")).body("dev_a")) == {
        "pushgate": {"p": "pub_1", "d": "dev_a"}
    }
    # Not a JSON object (a raw override): sent as it is.
    assert prepend(b"raw bytes", message_ids.object_value("pub_1")).body("dev_a") == b"raw bytes"


@pytest.mark.parametrize(
    "message",
    [
        {"notification": {"title": "t"}},
        {"data": dict(CONTENT), "android": {"priority": "high"}},
        {"data": {}},
        {"data": {"pushgate": "stale"}, "apns": {"payload": {"x": 1}}},
    ],
)
def test_fcm_ids_are_a_json_string_in_data(message: dict[str, object]) -> None:
    head = fcm_head(Stamped(message, "pub_9"))
    body = json.loads(head.body("dev_7") + b'"token":"t"}}')
    data = dict(body["message"].pop("data"))
    assert json.loads(data.pop("pushgate")) == {"p": "pub_9", "d": "dev_7"}
    want = {k: v for k, v in message.items() if k != "data"}
    assert body["message"] == {**want, "token": "t"}
    assert data == {k: v for k, v in dict(message.get("data") or {}).items() if k != "pushgate"}  # type: ignore[call-overload]
    # Without ids (an app that opted out): the body as before.
    plain = json.loads(fcm_head(message).body("dev_7") + b'"token":"t"}}')
    assert plain == {"message": {**message, "token": "t"}}


def test_ids_outside_the_alphabet_are_never_spliced() -> None:
    assert unwrap(Stamped({}, 'pub_"x')) == ({}, None)
    splice = Splice(b'{"d":"', b'"}')
    assert splice.body('dev_"x') == b'{"d":""}' and splice.body("dev_ok") == b'{"d":"dev_ok"}'


def test_multicast_payloads_carry_the_publish_only() -> None:
    assert json.loads(with_publish_id('{"k":"v"}', "pub_1")) == {"pushgate": {"p": "pub_1"}, "k": "v"}
    assert with_publish_id("not json", "pub_1") == "not json"
    assert with_publish_id("[1]", "pub_1") == "[1]"


@pytest.mark.parametrize("raw", [b"{name}", b'{"a":1}\n{"b":2}', b'{"pushgate":1,"a":2}', b"{ }x}"])
def test_a_body_that_is_not_one_json_object_goes_as_it_is(raw: bytes) -> None:
    """docs/receipts.md: a raw body (WNS ``providers.wns.body``) that is not a JSON object is sent
    as it is; one with its own ``pushgate`` key gets no second one. Braces at both ends do not
    make a JSON object: the app's raw text was cut and spliced."""
    assert prepend(raw, message_ids.object_value("pub_1")).body("dev_a") == raw


def test_multicast_ids_leave_the_apps_text_as_it_was() -> None:
    """An HMS ``data`` override is sent "as-is": adding the id must not re-encode it (a number
    too big for a float became ``Infinity``, not JSON; ``1e5`` grew to ``100000.0``, past the
    size admission counted; digits and duplicate keys were lost)."""
    text = '{"big": 1e400, "n": 1e5, "f": 0.10000000000000000001, "k": "v"}'
    out = with_publish_id(text, "pub_1")
    assert "Infinity" not in out and out.endswith(text[1:])
    assert json.loads(out)["pushgate"] == {"p": "pub_1"}
    assert len(out.encode()) <= len(text.encode()) + message_ids.overhead(multicast=True)
    assert with_publish_id(" { } ", "pub_1") == '{"pushgate":{"p":"pub_1"}}'
    # The app's own key (not reserved for HMS and MiPush data) keeps its value, as before.
    assert with_publish_id('{"pushgate": 1}', "pub_1") == '{"pushgate": 1}'


def test_the_overhead_covers_the_longest_ids() -> None:
    body = b'{"aps":{}}'
    spliced = prepend(body, message_ids.object_value(message_ids.MAX_PUBLISH_ID))
    assert len(spliced.body(message_ids.MAX_DELIVERY_ID)) - len(body) == message_ids.overhead()
    head = fcm_head(Stamped({"data": {"k": "v"}}, message_ids.MAX_PUBLISH_ID))
    plain = fcm_head({"data": {"k": "v"}})
    assert len(head.body(message_ids.MAX_DELIVERY_ID)) - len(plain.head) == message_ids.overhead(string=True)


def test_apps_opt_out_in_the_config(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "pushgate.toml"
    path.write_text("[apps.shop]\nmessage_ids = false\n[apps.blog]\nmessage_ids = true\n")
    settings = load_settings(path, env={})
    assert settings.message_ids("app_1", "shop") is False
    assert settings.message_ids("app_2", "blog") is True
    assert settings.message_ids("app_3", "other") is True


def test_hms_and_mipush_sizes_cover_the_publish_id() -> None:
    from pushgate.domain import render_hms, render_mipush
    from pushgate.domain.notification import Notification, ProviderOverrides

    for n in (Notification(title="T", data={"k": 'v"'}), Notification(title="T")):
        msg = render_hms.render(n, ProviderOverrides())
        data = msg.get("data", "{}")
        stamped = {**msg, "data": with_publish_id(data, message_ids.MAX_PUBLISH_ID)}
        assert render_hms.size(stamped) - render_hms._IDS_BYTES <= render_hms.RENDERER.size(msg)
        assert render_hms.RENDERER.size(msg) - (render_hms.size(stamped) - render_hms._IDS_BYTES) <= 12
        fields = render_mipush.render(n, ProviderOverrides()).fields
        grown = len(with_publish_id(fields["payload"], message_ids.MAX_PUBLISH_ID).encode())
        assert grown <= len(fields["payload"].encode()) + message_ids.overhead(multicast=True)
