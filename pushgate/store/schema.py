"""The database schema, one definition for SQLite and PostgreSQL.

Long because: it is every table in one place (the migrations are checked against it), each
with the comment that says why its columns exist.

Times are stored as epoch seconds (double precision): identical semantics on both databases,
cheap comparisons for the queue, and formatted as RFC 3339 only at the API edge.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(40), sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    #: What the key is for, as its owner named it (not unique; the id is).
    sa.Column("name", sa.String(100), nullable=False, server_default="initial"),
    #: Space-separated scopes: ``admin``, ``publish``, ``register``, ``read``.
    sa.Column("scopes", sa.String(64), nullable=False, server_default="admin publish read register"),
    #: Refreshed at most once a minute per process (not on every request).
    sa.Column("last_used_at", sa.Float, nullable=True),
    #: Set once; a revoked key authenticates nothing and is kept for the audit trail.
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index("ix_api_keys_app_id", "app_id", "created_at"),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(40), nullable=False),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("token", sa.Text, nullable=False),
    # sha256 of the provider's identity of the token (the endpoint for Web Push): unique per app.
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("user", sa.String(200), nullable=True),
    sa.Column("meta", sa.Text, nullable=True),
    sa.Column("locale", sa.String(35), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=True),
    #: APNs: ``production`` or ``sandbox`` (None: the credential's default environment).
    sa.Column("environment", sa.String(16), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("invalid_reason", sa.String(300), nullable=True),
    sa.Column("invalidated_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float, nullable=False),
    #: The app's version as the device reported it (``2.10.0``) ...
    sa.Column("app_version", sa.String(64), nullable=True),
    #: ... and its sortable form (``domain/filters.py:version_key``): ``version_gte`` compares
    #: these as strings, so ``2.10.0 > 2.9.9`` in SQL on both databases.
    sa.Column("app_version_key", sa.String(120), nullable=True),
    sa.UniqueConstraint("app_id", "provider", "token_hash", name="uq_devices_app_provider_token"),
    sa.Index("ix_devices_app_id_id", "app_id", "id"),
    sa.Index("ix_devices_app_user", "app_id", "user", "id"),
    sa.Index("ix_devices_last_seen", "last_seen_at"),
    # The filter language's indexes (docs/filters.md).
    sa.Index("ix_devices_app_provider", "app_id", "provider", "id"),
    sa.Index("ix_devices_app_locale", "app_id", "locale"),
    sa.Index("ix_devices_app_version", "app_id", "app_version_key"),
    sa.Index("ix_devices_app_seen", "app_id", "last_seen_at"),
    sa.Index("ix_devices_app_created", "app_id", "created_at"),
)

device_tags = sa.Table(
    "device_tags",
    metadata,
    sa.Column("device_id", sa.String(40), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("app_id", sa.String(40), nullable=False),
    sa.Column("value", sa.String(500), nullable=False),
    sa.Index("ix_device_tags_lookup", "app_id", "key", "value"),
)

device_channels = sa.Table(
    "device_channels",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("channel", sa.String(200), primary_key=True),
    sa.Column("device_id", sa.String(40), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_device_channels_device", "device_id"),
)

user_channels = sa.Table(
    "user_channels",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("user", sa.String(200), primary_key=True),
    sa.Column("channel", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_user_channels_channel", "app_id", "channel"),
)

publishes = sa.Table(
    "publishes",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    # The admitted request (recipients, notification, provider overrides) as JSON.
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("expire_at", sa.Float, nullable=True),
    sa.Column("planning_done", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("completed_at", sa.Float, nullable=True),
    #: When a ``scheduled`` publish's plan job is due (its ``send_at``); None: sent at admission.
    sa.Column("send_at", sa.Float, nullable=True),
    #: ``campaign`` and ``labels`` (JSON string map) as the publish gave them.
    sa.Column("campaign", sa.String(200), nullable=True),
    sa.Column("labels", sa.Text, nullable=True),
    #: A client-chosen publish id (``publish_id`` on the request): unique per app.
    sa.Column("client_id", sa.String(200), nullable=True),
    #: Planned and recorded (outcome ``dry_run``), never sent.
    sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("app_id", "idempotency_key", name="uq_publishes_idempotency"),
    sa.Index("ix_publishes_app_id_id", "app_id", "id"),
    sa.Index("ix_publishes_status", "status"),
    # The retention sweep: an app's publishes by the time they closed (store/retention.py).
    sa.Index("ix_publishes_retention", "app_id", "completed_at"),
    #: ``GET /v1/publishes?status=``: one app's publishes of one status, newest first.
    sa.Index("ix_publishes_app_status", "app_id", "status", "id"),
    #: ``GET /v1/publishes?campaign=`` and ``/v1/campaigns/{c}/stats``.
    sa.Index("ix_publishes_app_campaign", "app_id", "campaign", "id"),
    sa.Index("uq_publishes_client_id", "app_id", "client_id", unique=True),
)

# Counters per (publish, provider), moved with atomic ``x = x + n`` updates: no read-modify-write.
publish_stats = sa.Table(
    "publish_stats",
    metadata,
    sa.Column("publish_id", sa.String(40), primary_key=True),
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("planned", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sent", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("invalid_token", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retrying", sa.Integer, nullable=False, server_default="0"),
    sa.Column("expired", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cancelled", sa.Integer, nullable=False, server_default="0"),
    sa.Column("suppressed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("held", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dry_run", sa.Integer, nullable=False, server_default="0"),
    #: Receipts (docs/receipts.md): deliveries of this provider that reported each event (once each).
    sa.Column("delivered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("opened", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dismissed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("clicked", sa.Integer, nullable=False, server_default="0"),
)

# One record per (publish, recipient). The recipient is a device id, or ``tok_<hash>`` for a raw
# token that is not in the registry. The primary key makes fan-out dedupe and re-runs idempotent.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("publish_id", sa.String(40), primary_key=True),
    sa.Column("recipient_id", sa.String(80), primary_key=True),
    sa.Column("device_id", sa.String(40), nullable=True),
    sa.Column("provider", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_code", sa.String(80), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    #: The class of the last provider answer (domain/outcomes.py), e.g. ``provider_transient``.
    sa.Column("error_class", sa.String(24), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sent_at", sa.Float, nullable=True),
    sa.Column("provider_message_id", sa.String(300), nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    #: ``failed`` after exhausting its attempts on retryable errors: a dead letter (replayable).
    sa.Column("dead", sa.Boolean, nullable=False, server_default=sa.false()),
    #: ``held``: when its release batch is due (the rule holding it is ``error_code``).
    sa.Column("release_at", sa.Float, nullable=True),
    #: Receipts: when the device (or a realtime session's ack) first reported each event.
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("opened_at", sa.Float, nullable=True),
    sa.Column("dismissed_at", sa.Float, nullable=True),
    sa.Column("clicked_at", sa.Float, nullable=True),
    sa.Index("ix_deliveries_publish_status", "publish_id", "status"),
    sa.Index(
        "ix_deliveries_dead",
        "publish_id",
        "recipient_id",
        postgresql_where=sa.text("dead"),
        sqlite_where=sa.text("dead"),
    ),
)

# The durable job queue (docs/architecture.md, "The queue"): plan jobs resolve recipients,
# dispatch jobs send a batch.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("app_id", sa.String(40), nullable=False),
    sa.Column("publish_id", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("run_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
    #: Dispatch jobs: targets (in order) whose outcome is already committed; a re-claim resumes here.
    sa.Column("progress", sa.Integer, nullable=False, server_default="0"),
    #: Set while a dispatch job waits out its provider's quarantine (the provider's name), so
    #: closing the breaker can wake it at once.
    sa.Column("deferred_by", sa.String(16), nullable=True),
    #: Claims that ended in a deferral (not a failure): subtracted before the poison check.
    sa.Column("deferrals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    #: A small dispatch job's provider (``domain/jobs.py:group_key``): the claim of one such job
    #: takes up to ``engine.dispatch_group`` more of the same app and provider, sent together.
    sa.Column("group_key", sa.String(16), nullable=True),
    sa.Index("ix_jobs_run_at", "run_at"),
    sa.Index("ix_jobs_publish", "publish_id"),
    #: The fair claim's per-app scans (store/queue.py); ``id`` makes its order index-only.
    sa.Index("ix_jobs_app_run_at", "app_id", "run_at", "id"),
    #: The group claim's scan: one app's due jobs of one group, oldest first.
    sa.Index("ix_jobs_group", "app_id", "group_key", "run_at", "id"),
)

# Provider credentials uploaded through the API, encrypted with the master key (AES-GCM).
# Only metadata is ever read back out through the API.
credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("fingerprint", sa.String(100), nullable=False),
    sa.Column("environment", sa.String(16), nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    #: Bumped on every rotation so every process rebuilds its provider (and drops cached tokens).
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Quarantine (circuit breaker) state per (app, provider), shared by every worker process so one
# process's discovery parks the pair for all of them and the API can report it.
provider_health = sa.Table(
    "provider_health",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("provider", sa.String(16), primary_key=True),
    #: ``closed`` (sending), ``open`` (parked until ``open_until``), ``half_open`` (one probe out).
    sa.Column("state", sa.String(12), nullable=False, server_default="closed"),
    #: Consecutive provider-transient failures since the last success.
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    #: Length of the current (or last) cooldown; doubles when a probe fails.
    sa.Column("cooldown", sa.Float, nullable=False, server_default="0"),
    sa.Column("open_until", sa.Float, nullable=True),
    sa.Column("probe_until", sa.Float, nullable=True),
    sa.Column("opened_at", sa.Float, nullable=True),
    sa.Column("reason_class", sa.String(24), nullable=True),
    sa.Column("reason_code", sa.String(80), nullable=True),
    sa.Column("reason_message", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# The same breaker per push-service origin (``scheme://host[:port]``) for the providers whose
# endpoint each device names (Web Push, WNS): one failing origin parks only its own devices.
# A row exists only while the origin is not clean (a streak, open, half-open).
origin_health = sa.Table(
    "origin_health",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("origin", sa.String(320), primary_key=True),
    sa.Column("state", sa.String(12), nullable=False, server_default="closed"),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cooldown", sa.Float, nullable=False, server_default="0"),
    sa.Column("open_until", sa.Float, nullable=True),
    sa.Column("probe_until", sa.Float, nullable=True),
    sa.Column("opened_at", sa.Float, nullable=True),
    sa.Column("reason_class", sa.String(24), nullable=True),
    sa.Column("reason_code", sa.String(80), nullable=True),
    sa.Column("reason_message", sa.Text, nullable=True),
    sa.Column("failed_recipient", sa.String(64), nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# Provider answers per (app, provider, minute, class): the rolling window behind invalid-token
# health and "recent error classes". Minutes older than the window are deleted as they age out.
provider_events = sa.Table(
    "provider_events",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("minute", sa.Integer, primary_key=True),
    sa.Column("error_class", sa.String(24), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False, server_default="0"),
)

#: Always empty: ``Database.probe`` inserts a row and rolls it back to see whether the database
#: takes writes (disk full, read-only); ``/readyz`` and the engine's storage gate use it.
storage_probe = sa.Table(
    "storage_probe",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


# ---- policy (docs/policy.md): what decides when and whether a notification may go -------------

#: One row per app that changed its policy through the API (``PUT /v1/policy``): default time
#: zone, quiet hours and default frequency caps, as JSON (``domain/policy.py:AppPolicy``). Config
#: (``[policy]``, ``[apps.<name>.policy]``) gives the defaults an app without a row uses.
app_policies = sa.Table(
    "app_policies",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: Notification categories a publish may name (``category``) and users opt in or out of.
categories = sa.Table(
    "categories",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("description", sa.String(500), nullable=False, server_default=""),
    #: A user who never chose receives the category when true.
    sa.Column("default_opt_in", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: A user's explicit choice for one category (absent: the category's default).
user_preferences = sa.Table(
    "user_preferences",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("user", sa.String(200), primary_key=True),
    sa.Column("category", sa.String(64), primary_key=True),
    sa.Column("opted_in", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    #: The planner's lookup: one category's choices for a page of users.
    sa.Index("ix_user_preferences_category", "app_id", "category", "user"),
)

#: A user's own quiet hours (over the app's).
user_quiet_hours = sa.Table(
    "user_quiet_hours",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("user", sa.String(200), primary_key=True),
    #: ``domain/policy.py:QuietHours`` as JSON.
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: Frequency-cap counters: notifications counted in one fixed window of one scope (a device or a
#: user, optionally one category). Moved only by ``count = count + 1 … WHERE count < limit``, so
#: concurrent planners never exceed a cap (store/caps.py).
cap_counters = sa.Table(
    "cap_counters",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("scope", sa.String(320), primary_key=True),
    sa.Column("window_start", sa.Float, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False, server_default="0"),
    #: The retention sweep drops windows that ended.
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Index("ix_cap_counters_end", "window_end"),
)

#: What a cap decided for one publish and one scope: a user's second device on a later page of the
#: same publish gets the same decision, counted once.
cap_marks = sa.Table(
    "cap_marks",
    metadata,
    sa.Column("publish_id", sa.String(40), primary_key=True),
    sa.Column("scope", sa.String(320), primary_key=True),
    #: When the notification may go (now, or a later window's start); None: dropped.
    sa.Column("release_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_cap_marks_created", "created_at"),
)


# ---- what to say (docs/templates.md) ----------------------------------------------------------

#: Versioned templates: every ``PUT`` adds a version (a publish records the one it used and
#: keeps a copy of it, so editing never changes an accepted publish); ``DELETE`` marks them.
templates = sa.Table(
    "templates",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    #: The template (title/body/data/image/url, native fragments, locale variants) as JSON.
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=True),
)

#: A dry run's rendered payloads: the first one per (provider, locale), shown on the publish.
publish_samples = sa.Table(
    "publish_samples",
    metadata,
    sa.Column("publish_id", sa.String(40), primary_key=True),
    sa.Column("provider", sa.String(16), primary_key=True),
    sa.Column("locale", sa.String(35), primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),
)


# ---- realtime (docs/realtime.md) ---------------------------------------------------------------

#: Each app's HS256 secret for realtime connection tokens, made on first use (random, 32
#: bytes) so that every node of a cluster signs and verifies with the same one. A configured
#: ``[apps.<name>.realtime] token_secret`` replaces it (and is never stored).
realtime_secrets = sa.Table(
    "realtime_secrets",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


# ---- webhooks (docs/webhooks.md) ---------------------------------------------------------------

#: An app's HTTPS endpoint for signed events. ``failures`` counts consecutive failed attempts;
#: past ``[webhooks] max_failures`` the endpoint is disabled (``disabled_at``, ``disabled_reason``)
#: and its events wait until it is enabled again.
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(40), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    #: The HMAC-SHA256 key of ``X-Pushgate-Signature``.
    sa.Column("secret", sa.String(128), nullable=False),
    #: Space-separated event types (``*``: all).
    sa.Column("events", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("disabled_at", sa.Float, nullable=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    sa.Column("last_success_at", sa.Float, nullable=True),
    #: ``(completed_at, id)`` of the last closed publish turned into a ``publish.finished``
    #: event: the scan reads on from there, only publishes closed long enough ago to have
    #: committed (store/webhooks.py).
    sa.Column("publish_cursor", sa.Float, nullable=False),
    sa.Column("publish_cursor_id", sa.String(40), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_webhooks_app", "app_id"),
)

#: Events to post (one row per event and endpoint): written in the transaction of what they
#: report, marked ``sent_at`` once the endpoint answered 2xx (and deleted an hour later: the
#: row keeps the scan of closed publishes from writing the event again), retried with backoff
#: otherwise.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.String(40), nullable=False),
    sa.Column("app_id", sa.String(40), nullable=False),
    #: The event's own id (``evt_…``), the same for every endpoint: receivers dedupe on it.
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("sent_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    #: The sender's claim: unsent events by due time (sent ones are kept an hour, not indexed).
    sa.Index(
        "ix_webhook_events_due",
        "next_at",
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    ),
    sa.Index("ix_webhook_events_webhook", "webhook_id", "id"),
    sa.Index("uq_webhook_events_event", "webhook_id", "event_id", unique=True),
)

#: Channels a device token may join only when its token names them (docs/api.md, client tokens).
private_channels = sa.Table(
    "private_channels",
    metadata,
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("channel", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# ``realtime: "first"`` (docs/realtime.md): the users one of whose sessions acked a publish's
# ``notification`` event; planning skips their devices (outcome ``skipped``, ``realtime_acked``).
realtime_acks = sa.Table(
    "realtime_acks",
    metadata,
    sa.Column("publish_id", sa.String(40), primary_key=True),
    sa.Column("user", sa.String(200), primary_key=True),
    sa.Column("acked_at", sa.Float, nullable=False),
)

#: Signing keys of compat front-ends whose clients sign requests with a readable secret
#: (Sockudo's Pusher-style HMAC, docs/compat.md): the key id is public (``auth_key``), the
#: secret is sealed with the server's ``secret_key`` (``store/secretbox.py``), bound to the row.
compat_signing_keys = sa.Table(
    "compat_signing_keys",
    metadata,
    sa.Column("auth_key", sa.String(64), primary_key=True),
    sa.Column("app_id", sa.String(40), nullable=False),
    #: The front-end the key signs for (``sockudo``).
    sa.Column("system", sa.String(20), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("rotated_at", sa.Float, nullable=True),
    sa.Index("ix_compat_signing_keys_app", "app_id", "system"),
)

# notification-socket.io's connection ids (docs/compat.md): a backend registers one per client
# (``PUT /api/{userId}/register?connectionId=``), the client shows it with its user in the
# socket's ``register`` event. Stored hashed (SHA-256 of ``<user>\n<connection id>``: a leaked
# table opens no session), keyed with the app: the socket's ``register`` names no app, so the
# hash finds it; two apps holding the same (user, connection id) make it ambiguous (refused).
compat_connections = sa.Table(
    "compat_connections",
    metadata,
    sa.Column("conn_hash", sa.String(64), primary_key=True),
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    #: Registered or last used + ``store/compat_connections.py:TTL_SECONDS``; older rows are
    #: ignored and deleted by the next registration.
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_compat_connections_expires", "expires_at"),
)
