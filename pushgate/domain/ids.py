"""Opaque, prefixed, time-ordered ids (``dev_…``, ``pub_…``, ``app_…``).

Time-ordered so that "newest first" and cursor pagination are plain index scans on the id.
"""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1000:013x}{secrets.token_hex(6)}"
