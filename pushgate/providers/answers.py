"""Reading provider answers without letting one hostile answer hurt anything else.

A push service's answer is input pushgate did not choose: for Web Push and WNS the server is
whatever host a subscription names. Two guards live here, used by every provider module:

- :func:`decode_json` decodes with a size and a nesting-depth limit and turns every failure
  (including the ``RecursionError`` that msgspec and ``json`` both raise on very deep input,
  e.g. 100,000 ``[``) into ``msgspec.DecodeError``, the one error the classifiers already
  handle. Provider answers are a few levels deep; nothing legitimate comes near the limit.
- :func:`one` / :func:`group` run one target's (or one multi-token request's) send and
  classification, and turn any exception into that target's outcome
  (``provider_transient`` / ``invalid_response``), so a bug or an unforeseen answer costs one
  delivery a retry instead of crashing the batch (a crashed batch is re-claimed and re-sent to
  every recipient in it).

The response body itself is capped earlier, while it is read (``providers/http.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from typing import Any

import msgspec

from pushgate.domain.outcomes import Outcome, SendResult

__all__ = ["INVALID_RESPONSE", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "decode_json", "group", "one"]

log = logging.getLogger("pushgate.providers")

#: The largest answer decoded as JSON. ``engine.max_response_bytes`` (64 KiB by default) cuts
#: bodies before this; the limit here also holds for answers that arrive by another transport.
MAX_JSON_BYTES = 1024 * 1024
#: Nesting levels allowed in an answer (real ones use fewer than ten).
MAX_JSON_DEPTH = 64
#: The error code of an answer pushgate could not handle.
INVALID_RESPONSE = "invalid_response"

_decode = msgspec.json.Decoder().decode
#: A JSON string (skipped whole: brackets inside it do not nest) or one bracket.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _too_deep(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests deeper than ``limit``; the scan runs only when there are more
    opening brackets than ``limit`` at all (two C-speed counts for every normal answer)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for m in _TOKENS.finditer(body):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif c in (b"]", b"}"):
            depth -= 1
    return False


def decode_json(
    body: bytes | str, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Decode a provider's JSON answer; raises ``msgspec.DecodeError`` for anything unusable:
    malformed, larger than ``max_bytes``, nested deeper than ``max_depth``."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise msgspec.DecodeError(f"answer of {len(raw):,} bytes is over the {max_bytes:,}-byte limit")
    if _too_deep(raw, max_depth):
        raise msgspec.DecodeError(f"answer nests deeper than {max_depth} levels")
    try:
        return _decode(raw)
    except RecursionError:  # unreachable past the depth check; kept so no input can escape
        raise msgspec.DecodeError("answer nests too deep") from None


def _where(exc: BaseException) -> str:
    """``module.py:line`` where ``exc`` was raised."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


def _failure(provider: str, exc: Exception) -> SendResult:
    # Neither the log nor the record copies the exception's text: it may quote the answer or
    # hold a device token. Its type and where it was raised are enough to find the bug.
    log.error(
        "%s: could not handle an answer (%s at %s); recorded as %s for that target only",
        provider,
        type(exc).__name__,
        _where(exc),
        INVALID_RESPONSE,
    )
    return _failure_result(provider, type(exc).__name__)


def _failure_result(provider: str, kind: str = "wrong number of results") -> SendResult:
    return SendResult(
        Outcome.PROVIDER_TRANSIENT,
        error_code=INVALID_RESPONSE,
        error_message=f"pushgate could not handle the {provider} answer ({kind}); retried",
    )


async def one(provider: str, work: Awaitable[SendResult]) -> SendResult:
    """``work``'s result, or an ``invalid_response`` outcome if it raised (cancellation still
    propagates: it is a ``BaseException``)."""
    try:
        return await work
    except Exception as exc:
        return _failure(provider, exc)


async def group(provider: str, work: Awaitable[list[SendResult]], size: int) -> list[SendResult]:
    """Like :func:`one` for a request that carries ``size`` tokens (HMS, MiPush): one answer
    covers them all, so a failure to handle it is each of theirs.

    Also the dispatcher's last net around ``send_batch``: a result list of the wrong length
    (it would pair answers with the wrong targets) fails the whole chunk the same way, and an
    error code longer than its column is cut, so no answer can make the outcome commit fail
    (the chunk would then be sent again at every claim)."""
    try:
        results = await work
    except Exception as exc:
        return [_failure(provider, exc)] * size
    if len(results) != size:
        log.error(
            "%s: %d results for %d targets; recorded as %s", provider, len(results), size, INVALID_RESPONSE
        )
        return [_failure_result(provider)] * size
    if any(r.error_code is not None and len(r.error_code) > MAX_CODE for r in results):
        results = [_short_code(r) for r in results]
    return results


#: ``deliveries.error_code`` is 64 characters.
MAX_CODE = 64


def _short_code(result: SendResult) -> SendResult:
    code = result.error_code
    if code is None or len(code) <= MAX_CODE:
        return result
    return SendResult(
        result.outcome, result.provider_message_id, code[:MAX_CODE], result.error_message, result.retry_after
    )
