"""Prometheus metrics, declared in one place so every layer counts into the same registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CREDENTIAL_EXPIRY = Gauge(
    "pushgate_credential_expiry_timestamp_seconds",
    "When a provider certificate expires (UNIX time); alert well before it.",
    ["app_id", "provider"],
)

DELIVERIES = Counter(
    "pushgate_deliveries_total",
    "Provider answers recorded, by provider and error class (sent, device_terminal, …).",
    ["provider", "error_class"],
)

QUARANTINED = Gauge(
    "pushgate_provider_quarantined",
    "1 while an (app, provider) pair is quarantined by its circuit breaker.",
    ["app_id", "provider"],
)

DEFERRED = Counter(
    "pushgate_deferred_batches_total",
    "Dispatch batches deferred without an attempt, by provider and reason (quarantine, rate).",
    ["provider", "reason"],
)

INVALID_RATE = Gauge(
    "pushgate_provider_invalid_token_rate",
    "Share of device_terminal answers in the rolling health window, per (app, provider).",
    ["app_id", "provider"],
)
