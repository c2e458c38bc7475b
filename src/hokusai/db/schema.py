"""Tables of the auth store. Alembic migrations create them; this module describes them.

Kept in SQLAlchemy Core: the gateway's hot path reads one row by a unique index and
needs no ORM identity map.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
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
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_key_id_at", "key_id", "at"),
)
