"""Tables of the auth store. Alembic migrations create them; this module describes them.

Kept in SQLAlchemy Core: the gateway's hot path reads one row by a unique index and
needs no ORM identity map.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    # HMAC-SHA256 of the whole key under the server secret, hex: never the key itself.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("display_prefix", String(32), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("env", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("rotated_from", String(32), nullable=True),
    # The workspace the key acts in; NULL: a platform admin key, which acts in every one.
    Column("workspace", String(63), nullable=True, index=True),
    # JSON list of model-name patterns a write key is limited to; NULL: every model.
    Column("model_patterns", Text, nullable=True),
    # A person signed in with single sign-on: the provider's issuer and ``sub``. Such a row
    # is no key anyone holds (its key_hash is of random bytes nobody kept); NULL for keys.
    Column("subject", String(300), nullable=True),
    Index("ix_api_keys_subject", "subject", unique=True),
)

# Browser sessions: a person signed in with a key (the cookie holds a token; only its keyed
# hash is stored). The key's state decides on every request: revoking it ends the session.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("key_id", String(32), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    # The absolute end; an idle session ends earlier (HOKUSAI_SESSION_IDLE_TIMEOUT).
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
)

# Single sign-on attempts in flight: started at /login/sso, finished once at its callback
# on any replica. The state is stored hashed (it travels in URLs); the nonce and PKCE
# verifier must be usable, and live minutes.
sso_attempts = Table(
    "sso_attempts",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    # Hash of the random value in the browser's short-lived cookie: the attempt is finished
    # only by the browser that started it.
    Column("browser_hash", String(64), nullable=False),
    Column("nonce", String(128), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("next_path", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("used_at", DateTime(timezone=True), nullable=True),
)

# A workspace is a team: MLflow isolates its experiments, runs, models and artifacts
# (MLflow's own workspaces); this table holds what the platform adds to each.
workspaces = Table(
    "workspaces",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    # JSON list of alias names only a ``promote`` key may set or delete.
    Column("protected_aliases", Text, nullable=False),
    # When true, a protected alias may only name a version whose measured metric meets
    # its baseline (the ``token.ready_for_deploy`` rule).
    Column("promotion_gate", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # When true, a protected alias may only name a version whose manifest is signed by a
    # key in the workspace's ``trusted_keys``.
    Column("require_signed_versions", Boolean, nullable=False, server_default=false()),
)

# The public keys whose signatures a workspace trusts (``hokusai.signing``): a version
# signed by one of them loads with ``verify="signature"``, and may take a protected alias
# when the workspace requires signed versions.
trusted_keys = Table(
    "trusted_keys",
    metadata,
    Column("workspace", String(63), primary_key=True),
    # ``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo.
    Column("fingerprint", String(71), primary_key=True),
    Column("public_key", Text, nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("added_by", String(200), nullable=False, default=""),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("owner", String(200), nullable=True),
    Column("action", String(64), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("client", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    # The workspace acted in; NULL for platform-wide actions.
    Column("workspace", String(63), nullable=True),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_workspace_at", "workspace", "at"),
    Index("ix_audit_log_key_id_at", "key_id", "at"),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    # JSON list of event types; empty: every event.
    Column("event_types", Text, nullable=False),
    Column("model_filter", String(256), nullable=True),
    # An endpoint receives only its workspace's events.
    Column("workspace", String(63), nullable=False, server_default="default"),
    # Signing secrets, encrypted under the server secret (they must be usable to sign).
    Column("secret_encrypted", Text, nullable=False),
    Column("previous_secret_encrypted", Text, nullable=True),
    Column("previous_secret_expires_at", DateTime(timezone=True), nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_reason", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

events = Table(
    "events",
    metadata,
    # Monotonic order of emission: the order receivers get a model's events in.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(40), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("model_name", String(256), nullable=True),
    Column("model_version", String(32), nullable=True),
    Column("payload", Text, nullable=False),
    # Set for events the reconciler may also find: at most one event per dedupe key.
    Column("dedupe_key", String(400), nullable=True, unique=True),
    Column("source", String(16), nullable=False),
    Column("workspace", String(63), nullable=False, server_default="default"),
    Index("ix_events_occurred_at", "occurred_at"),
    Index("ix_events_model", "model_name", "model_version"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_seq", BigInteger, nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("endpoint_id", String(32), nullable=False),
    # pending (not tried yet), failed (retry scheduled), delivered, dead.
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    # A dispatcher that claimed the delivery holds it until then (crash safety).
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("event_id", "endpoint_id", name="uq_deliveries_event_endpoint"),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_endpoint", "endpoint_id", "status"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("delivery_id", BigInteger, nullable=False, index=True),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("response_snippet", Text, nullable=True),
    Column("error", Text, nullable=True),
)

# The shared per-key token buckets of gateway replicas on PostgreSQL (gateway/ratelimit.py).
# Only PostgreSQL uses it; a bucket is rebuilt full when its row is missing, so nothing here
# needs a backup.
rate_limit_buckets = Table(
    "rate_limit_buckets",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("granted", Float, nullable=False),  # what the last request took, for RETURNING
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Registry writes proxied by any gateway replica, so that every replica's resolution cache
# drops what they changed (gateway/registry_changes.py). Rows are written under a table
# lock on PostgreSQL, so ``seq`` grows in commit order; the newest rows are kept.
registry_changes = Table(
    "registry_changes",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    # The model changed, as the cache indexes it; NULL: anything may have changed.
    Column("model", Text, nullable=True),
    # Its workspace (two teams may both have a model of that name); NULL: any workspace.
    Column("workspace", String(63), nullable=True),
    # The gateway process that recorded it: that one has dropped the answers already.
    Column("origin", String(32), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# The SHA-256 of every artifact file uploaded through a gateway, computed as the upload
# streamed past (gateway/upload_digests.py). A version registered by a stock MLflow client
# gets its manifest from these rows: what the gateway saw, not what the store has now.
artifact_digests = Table(
    "artifact_digests",
    metadata,
    Column("workspace", String(63), primary_key=True),
    # Relative to the workspace's artifact root, as frozen_artifacts.artifact_path gives it.
    Column("path", Text, primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
