"""Tiny helpers for responses, so every simulator answers with exact bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    """Encode with msgspec ourselves: the body shape is the wire contract, not a schema."""
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type="application/json; charset=UTF-8",
        headers=dict(headers or {}),
    )


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    return Response(content=b"", status_code=status, headers=dict(headers or {}), media_type="text/plain")


def transport_of(request: Request) -> str:
    """How a request arrived, for the ledger: ``h2`` (HTTP/2 over TLS), ``http/1.1+tls``, or
    ``http/1.1`` (cleartext). Tests read it to prove pushgate's production transport ran."""
    version = str(request.scope.get("http_version", "1.1"))
    tls = request.scope.get("scheme") == "https"
    if version == "2":
        return "h2" if tls else "h2c"
    return f"http/{version}+tls" if tls else f"http/{version}"
