"""A log record is one line whatever text it carries (a crafted request path, a provider's
error message): otherwise a ``%0A`` in an unauthenticated URL forges a log entry."""

from __future__ import annotations

import logging
import sys

from pushgate.cli.common import OneLineFormatter


def _format(msg: str, *args: object, exc: bool = False) -> str:
    record = logging.LogRecord("pushgate.access", logging.INFO, __file__, 1, msg, args, None)
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            record.exc_info = sys.exc_info()
    return OneLineFormatter("%(levelname)s %(name)s: %(message)s").format(record)


def test_control_characters_in_a_message_are_escaped() -> None:
    path = "/v1/x\n2026-11-30 INFO pushgate.access: req=forged GET /admin 200\r\x1b[31m\x7f"
    line = _format("req=%s %s %s %d", "abc", "GET", path, 404)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x7f" not in line
    assert "/v1/x\\n2026-11-30 INFO" in line and "\\r\\x1b[31m\\x7f" in line


def test_a_traceback_keeps_its_lines_and_plain_text_is_unchanged() -> None:
    assert _format("sent %d of %d", 3, 4) == "INFO pushgate.access: sent 3 of 4"
    out = _format("failed", exc=True)
    assert out.startswith("INFO pushgate.access: failed\nTraceback") and "ValueError: boom" in out
