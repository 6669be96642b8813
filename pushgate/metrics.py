"""Prometheus metrics, declared in one place so every layer counts into the same registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

POLICY_OUTCOMES = Counter(
    "pushgate_policy_outcomes_total",
    "Recipients the policy layer held, suppressed or skipped at planning, by status and reason "
    "(delivery_window, local_time, quiet_hours, preference, frequency_cap, no_payload_for_provider, …).",
    ["status", "reason"],
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

SEND_SECONDS = Histogram(
    "pushgate_provider_send_seconds",
    "Time for one chunk (up to 100 targets, sent concurrently) to be answered by the provider.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

RECORD_SECONDS = Histogram(
    "pushgate_status_write_seconds",
    "Time to commit one chunk's outcomes (delivery records, counters, retries, job progress).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

GROUP_JOBS = Histogram(
    "pushgate_dispatch_group_jobs",
    "Small dispatch jobs (one per publish and provider) sent together by one claim and "
    "recorded in one transaction (engine.dispatch_group).",
    ["provider"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)

RETENTION_DELETED = Counter(
    "pushgate_retention_deleted_rows_total",
    "Rows the retention sweep deleted, by kind (publish, delivery, dead_letter, publish_stats, job).",
    ["kind"],
)

WEBHOOK_POSTS = Counter(
    "pushgate_webhook_posts_total",
    "Webhook event posts, by result (delivered: a 2xx answer; failed: anything else, retried).",
    ["result"],
)
