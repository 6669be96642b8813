"""Turning a provider's config section into its typed settings Struct, once.

A misspelt or missing credential must stop startup with ``hms.app_id: required`` rather than
surface as a 401 on the first publish, so every conversion error names ``<provider>.<key>``.
The config file's sections are converted by ``pushgate.config`` and uploaded bodies by
``api/credentials.py``; this helper is for the other sources: credentials read back from the
database, and callers that hold a plain mapping (``Provider.create`` accepts one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from pushgate.providers.base import ProviderConfigError, ProviderSettings

__all__ = ["convert_error", "optional", "required", "section"]

S = TypeVar("S", bound=ProviderSettings)


def convert_error(err: msgspec.ValidationError) -> tuple[str, str]:
    """``(dotted path, what is wrong)`` of a msgspec error, e.g. ``("concurrency", "Expected …")``."""
    msg = str(err)
    m = re.search(r" - at `\$\.?(.*)`$", msg)
    where = m.group(1) if m else ""
    text = msg[: m.start()] if m else msg
    unknown = re.match(r"Object contains unknown field `(.+)`", text)
    if unknown:
        return (f"{where}.{unknown.group(1)}" if where else unknown.group(1)), "unknown key"
    return where, text


def section(kind: type[S], name: str, value: S | Mapping[str, Any]) -> S:
    """``value`` as ``kind``: passed through when already typed, else converted (strings such
    as ``"50"`` from the environment become numbers where the field is one)."""
    if isinstance(value, ProviderSettings):
        if not isinstance(value, kind):
            raise ProviderConfigError(f"{name}: settings of another provider ({type(value).__name__})")
        return value
    try:
        return msgspec.convert(dict(value), kind, strict=False)
    except msgspec.ValidationError as exc:
        where, text = convert_error(exc)
        raise ProviderConfigError(f"{name}.{where}: {text}" if where else f"{name}: {text}") from None


def required(value: str | None, name: str, key: str) -> str:
    """A key the provider cannot work without (empty counts as missing: ``${VAR:-}``)."""
    if value is None or not value.strip():
        raise ProviderConfigError(f"{name}.{key}: required")
    return value.strip()


def optional(value: str | None) -> str | None:
    return (value.strip() or None) if value is not None else None
