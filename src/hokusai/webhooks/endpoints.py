"""Webhook endpoints: adding (with validation), listing, enabling, rotating, testing."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, delete, select, update

from hokusai.db.schema import deliveries, webhook_endpoints
from hokusai.db.timestamps import as_utc, utcnow
from hokusai.webhooks.events import EVENT_TYPES
from hokusai.webhooks.signing import SecretBox, new_secret

ROTATION_GRACE = timedelta(hours=24)
_GLOB = re.compile(r"^[A-Za-z0-9_.\-*?\[\]! /:@]{1,256}$")


class EndpointError(ValueError):
    """Invalid endpoint input; nothing was stored."""


class EndpointNotFound(LookupError):
    pass


@dataclass(frozen=True)
class NewEndpoint:
    endpoint: dict[str, Any]
    secret: str


def validate_url(url: str, *, allow_private: bool) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"{url!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise EndpointError("the URL must not carry credentials; the signature authenticates")
    if parts.fragment or len(url) > 2000:
        raise EndpointError("the URL must have no #fragment and at most 2000 characters")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url
    if not allow_private and not address.is_global:
        raise EndpointError(
            f"{parts.hostname} is a private, loopback or link-local address; refused unless "
            "HOKUSAI_WEBHOOK_ALLOW_PRIVATE=1"
        )
    return url


def validate_event_types(types: list[str]) -> list[str]:
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise EndpointError(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    return sorted(set(types))


def validate_model_filter(pattern: str | None) -> str | None:
    if pattern is None or pattern == "":
        return None
    if not _GLOB.match(pattern) or pattern.count("[") != pattern.count("]"):
        raise EndpointError(
            f"{pattern!r} is not a model name or glob (letters, digits, _ . - / and * ? [ ])"
        )
    return pattern


def public(row: dict[str, Any]) -> dict[str, Any]:
    """An endpoint as shown to admins: never its secret."""
    return {
        "id": row["id"],
        "url": row["url"],
        "description": row["description"],
        "event_types": json.loads(row["event_types"]),
        "model_filter": row["model_filter"],
        "enabled": bool(row["enabled"]),
        "disabled_reason": row["disabled_reason"],
        "created_at": as_utc(row["created_at"]).isoformat(),  # type: ignore[union-attr]
        "updated_at": as_utc(row["updated_at"]).isoformat(),  # type: ignore[union-attr]
        "secret_rotation_until": (
            as_utc(row["previous_secret_expires_at"]).isoformat()  # type: ignore[union-attr]
            if row["previous_secret_encrypted"]
            else None
        ),
    }


class Endpoints:
    def __init__(self, engine: Engine, box: SecretBox, *, allow_private: bool) -> None:
        self.engine = engine
        self.box = box
        self.allow_private = allow_private

    def add(
        self,
        url: str,
        *,
        event_types: list[str] | None = None,
        model_filter: str | None = None,
        description: str = "",
    ) -> NewEndpoint:
        url = validate_url(url, allow_private=self.allow_private)
        types = validate_event_types(event_types or [])
        pattern = validate_model_filter(model_filter)
        if len(description) > 1000:
            raise EndpointError("the description is longer than 1000 characters")
        secret = new_secret()
        now = utcnow()
        row = {
            "id": "wh_" + secrets.token_hex(8),
            "url": url,
            "description": description,
            "event_types": json.dumps(types),
            "model_filter": pattern,
            "secret_encrypted": self.box.seal(secret),
            "previous_secret_encrypted": None,
            "previous_secret_expires_at": None,
            "enabled": True,
            "disabled_reason": None,
            "created_at": now,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            conn.execute(webhook_endpoints.insert().values(**row))
        return NewEndpoint(public(row), secret)

    def get_row(self, endpoint_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
            ).first()
        if row is None:
            raise EndpointNotFound(f"no webhook endpoint {endpoint_id!r}")
        return dict(row._mapping)

    def get(self, endpoint_id: str) -> dict[str, Any]:
        return public(self.get_row(endpoint_id))

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(webhook_endpoints).order_by(webhook_endpoints.c.created_at))
            return [public(dict(r._mapping)) for r in rows]

    def set_enabled(
        self, endpoint_id: str, enabled: bool, reason: str | None = None
    ) -> dict[str, Any]:
        self.get_row(endpoint_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id)
                .values(
                    enabled=enabled,
                    updated_at=utcnow(),
                    disabled_reason=None if enabled else (reason or "disabled by an admin"),
                )
            )
        return self.get(endpoint_id)

    def remove(self, endpoint_id: str) -> None:
        self.get_row(endpoint_id)
        with self.engine.begin() as conn:
            conn.execute(
                delete(deliveries).where(
                    deliveries.c.endpoint_id == endpoint_id,
                    deliveries.c.status.in_(("pending", "failed")),
                )
            )
            conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))

    def rotate_secret(self, endpoint_id: str, grace: timedelta = ROTATION_GRACE) -> NewEndpoint:
        """A new secret; the old one keeps signing (as a second signature) for ``grace``."""
        row = self.get_row(endpoint_id)
        secret = new_secret()
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id)
                .values(
                    secret_encrypted=self.box.seal(secret),
                    previous_secret_encrypted=row["secret_encrypted"],
                    previous_secret_expires_at=now + grace,
                    updated_at=now,
                )
            )
        return NewEndpoint(self.get(endpoint_id), secret)


# ---- on a caller's connection ------------------------------------------------------------
# For services that change an endpoint and write its audit row in one transaction.


def new_endpoint_row(
    url: str,
    *,
    event_types: list[str],
    model_filter: str | None,
    description: str,
    sealed_secret: str,
    allow_private: bool,
) -> dict[str, Any]:
    """A validated ``webhook_endpoints`` row; :class:`EndpointError` says what is wrong."""
    url = validate_url(url, allow_private=allow_private)
    types = validate_event_types(event_types)
    pattern = validate_model_filter(model_filter)
    if len(description) > 1000:
        raise EndpointError("the description is longer than 1000 characters")
    now = utcnow()
    return {
        "id": "wh_" + secrets.token_hex(8),
        "url": url,
        "description": description,
        "event_types": json.dumps(types),
        "model_filter": pattern,
        "secret_encrypted": sealed_secret,
        "previous_secret_encrypted": None,
        "previous_secret_expires_at": None,
        "enabled": True,
        "disabled_reason": None,
        "created_at": now,
        "updated_at": now,
    }


def insert_endpoint(conn: Connection, *, row: dict[str, Any]) -> None:
    conn.execute(webhook_endpoints.insert().values(**row))


def endpoint_row(conn: Connection, *, endpoint_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    ).first()
    return dict(row._mapping) if row else None


def endpoint_rows(conn: Connection) -> list[dict[str, Any]]:
    query = select(webhook_endpoints).order_by(webhook_endpoints.c.created_at)
    return [dict(r._mapping) for r in conn.execute(query)]


def update_endpoint(conn: Connection, *, endpoint_id: str, **values: Any) -> bool:
    """Set ``values`` (and ``updated_at``) on one endpoint; whether it exists."""
    result = conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(updated_at=utcnow(), **values)
    )
    return result.rowcount == 1


def delete_endpoint(conn: Connection, *, endpoint_id: str) -> None:
    """Remove an endpoint and its deliveries not yet made (made ones stay as history)."""
    conn.execute(
        delete(deliveries).where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status.in_(("pending", "failed")),
        )
    )
    conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
