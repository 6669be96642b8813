"""Rules of the device registry: channel names, platforms, time zones.

Which platforms each provider serves is the provider's own fact (``ProviderSpec.platforms``).
"""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

#: Matched whole (``fullmatch``): a ``$`` anchor would let a trailing newline through.
CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-=@,.;:/]{1,200}")
CHANNEL_RULE = "1-200 characters of A-Z a-z 0-9 and _ - = @ , . ; : /"

PLATFORMS: tuple[str, ...] = ("ios", "android", "web", "windows", "macos", "other")


def valid_channel(name: str) -> bool:
    return bool(CHANNEL_RE.fullmatch(name))


@lru_cache(maxsize=1024)
def valid_timezone(name: str) -> bool:
    if not name or len(name) > 64 or name.startswith("/") or ".." in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def mask_token(token: str) -> str:
    """Enough of a token to correlate log lines, never enough to use it (logs never carry tokens)."""
    return token[:6] + "…" if len(token) > 10 else "…"
