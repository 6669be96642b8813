"""Typed accessors for a provider's config section that fail naming the key.

A misspelt or missing credential must stop startup with ``hms.app_id: required`` rather than
surface as a 401 on the first publish; these helpers keep that message uniform across providers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pushgate.providers.base import ProviderConfigError

__all__ = ["concurrency", "optional_str", "required_str", "timeout", "url"]


def required_str(settings: Mapping[str, Any], section: str, key: str) -> str:
    value = settings.get(key)
    if value is None or value == "":
        raise ProviderConfigError(f"{section}.{key}: required")
    if not isinstance(value, str) or not value.strip():
        raise ProviderConfigError(f"{section}.{key}: must be a non-empty string")
    return value.strip()


def optional_str(settings: Mapping[str, Any], section: str, key: str) -> str | None:
    value = settings.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProviderConfigError(f"{section}.{key}: must be a string")
    return value.strip() or None


def url(settings: Mapping[str, Any], section: str, key: str, default: str) -> str:
    value = settings.get(key) or default
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ProviderConfigError(f"{section}.{key}: must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def concurrency(settings: Mapping[str, Any], section: str, default: int) -> int:
    value = settings.get("concurrency", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProviderConfigError(f"{section}.concurrency: must be a positive integer, got {value!r}")
    return value


def timeout(settings: Mapping[str, Any], section: str) -> float | None:
    value = settings.get("timeout")
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ProviderConfigError(f"{section}.timeout: must be a positive number of seconds, got {value!r}")
    return float(value)
