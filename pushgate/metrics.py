"""Prometheus metrics, declared in one place so every layer counts into the same registry."""

from __future__ import annotations

from prometheus_client import Gauge

CREDENTIAL_EXPIRY = Gauge(
    "pushgate_credential_expiry_timestamp_seconds",
    "When a provider certificate expires (UNIX time); alert well before it.",
    ["app_id", "provider"],
)
