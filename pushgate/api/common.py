"""Helpers shared by the routers: token normalisation, pagination, channel checks."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request

from pushgate.api.errors import bad_request
from pushgate.config import Settings
from pushgate.domain.registry import CHANNEL_RULE, valid_channel
from pushgate.providers import registry
from pushgate.providers.base import ProviderSpec

#: The longest token stored (a Web Push subscription's compact JSON included) and the longest
#: endpoint a token may carry (Web Push): real ones are a few hundred characters.
MAX_TOKEN = 4096
MAX_ENDPOINT = 2048


def provider_spec(provider: str, where: str = "provider") -> ProviderSpec:
    """The registry's spec of a provider named in a request; a 400 naming ``where`` otherwise.

    The request schemas take any provider name (a provider registered at start-up needs no
    schema change), so every route checks the name here, with one message."""
    spec = registry.find(provider)
    if spec is None:
        raise bad_request(f"{where}: unknown provider {provider!r} (use {', '.join(registry.names())})")
    return spec


def normalize_token(provider: str, token: str | dict[str, Any], settings: Settings) -> tuple[str, str]:
    """Return ``(stored token, identity key)``; the key decides "same device" (the endpoint for
    Web Push). The rules are the provider's (``ProviderSpec.normalize_token``)."""
    spec = provider_spec(provider)
    allow = settings.outbound.allowance(settings.devices.allow_loopback_endpoints)
    try:
        stored, key = spec.normalize_token(token, allow)
    except ValueError as exc:
        raise bad_request(f"token: {exc}") from None
    if key != stored and len(key) > MAX_ENDPOINT:
        raise bad_request(f"token: the endpoint is {len(key)} characters long; the most is {MAX_ENDPOINT}")
    if len(stored) > MAX_TOKEN:
        raise bad_request(f"token: {len(stored)} characters once normalised; the most is {MAX_TOKEN}")
    return stored, key


def check_channels(channels: list[str] | None, field: str = "channels") -> None:
    for ch in channels or ():
        if not valid_channel(ch):
            raise bad_request(f"{field}: invalid channel name {ch!r}: use {CHANNEL_RULE}")


def page_limit(limit: int | None, settings: Settings) -> int:
    if limit is None:
        return settings.limits.default_page_size
    if limit < 1 or limit > settings.limits.max_page_size:
        raise bad_request(f"limit: must be between 1 and {settings.limits.max_page_size}")
    return limit


def split_list(values: list[str] | None) -> list[str] | None:
    """Accept both ``?ids=a&ids=b`` and ``?ids=a,b``."""
    if not values:
        return None
    out = [v for item in values for v in item.split(",") if v]
    return out or None


#: ``\u0000`` in a JSON string, unless its backslash is itself escaped (``\\u0000`` is literal text).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL = "NUL characters (\\u0000) are not allowed"


async def reject_unstorable(request: Request[Any, Any, Any]) -> None:
    """A 400 for text no database can store, before it reaches one (PostgreSQL refuses NUL in text).

    Checks the path, the query string and the body: NUL characters anywhere, a body that isn't UTF-8.
    """
    if "\x00" in request.scope["path"]:
        raise bad_request(f"path: {_NUL}")
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise bad_request(f"{key.replace(chr(0), '')}: {_NUL}")
    body = await request.body()
    if body:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad_request(f"malformed JSON body: not UTF-8 (byte {exc.start})") from None
        if _JSON_NUL.search(body):
            raise bad_request(f"body: {_NUL}")
        _strict_json(request, body)


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _strict_json(request: Request[Any, Any, Any], body: bytes) -> None:
    """Check a JSON body against the handler's schema with JSON's own types.

    Litestar converts handler arguments leniently (``0`` becomes ``false``, ``"5"`` becomes
    ``5``), which would accept bodies our OpenAPI document calls invalid; this decode is strict,
    so the document and the server agree. Malformed JSON is left to Litestar's own message.
    """
    param = request.route_handler.parsed_fn_signature.parameters.get("data")
    target = param.annotation if param is not None else None
    if not isinstance(target, type) or not issubclass(target, msgspec.Struct):
        return
    decoder = _DECODERS.get(target)
    if decoder is None:
        decoder = _DECODERS[target] = msgspec.json.Decoder(target, strict=True)
    try:
        decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        where = ""
        if " - at `$" in text:
            text, _, path = text.rpartition(" - at `$")
            where = path.rstrip("`").lstrip(".")
        raise bad_request(f"{where or 'body'}: {text}") from None
    except msgspec.DecodeError:
        return
