"""Webhook endpoints: adding (with validation), listing, enabling, rotating, testing.

An endpoint belongs to one workspace and receives only that workspace's events."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import idna
import yarl
from sqlalchemy import Connection, delete, select, update

from hokusai.db.schema import deliveries, webhook_endpoints
from hokusai.timestamps import utcnow
from hokusai.webhooks.events import EVENT_TYPES

ROTATION_GRACE = timedelta(hours=24)
_GLOB = re.compile(r"^[A-Za-z0-9_.\-*?\[\]! /:@]{1,256}$")


class EndpointError(ValueError):
    """Invalid endpoint input; nothing was stored."""


@dataclass(frozen=True)
class Destination:
    """A webhook URL as the dispatcher uses it: where to connect and what to send."""

    scheme: str
    host: str  # an ASCII (IDNA) host name, or an IP address without brackets
    port: int
    target: str  # path and query, as given; "/" when empty
    explicit_port: bool

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def host_header(self) -> str:
        literal = f"[{self.host}]" if ":" in self.host else self.host
        return f"{literal}:{self.port}" if self.explicit_port else literal


MAX_URL_LENGTH = 2000
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z", re.IGNORECASE)


def parse_destination(url: str) -> Destination:
    """The one reading of a webhook URL, when it is added and when it is delivered to.

    yarl splits it (RFC 3986: scheme, authority, port range, IPv6 brackets); the host is
    then an IP address or a host name that IDNA 2008 (UTS 46, STD 3 rules) accepts: labels
    of 1 to 63 characters, at most 253 in all. Raises ``EndpointError`` saying what is wrong.
    """
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise EndpointError(
            f"the URL must have no #fragment and at most {MAX_URL_LENGTH} characters"
        )
    try:
        parsed = yarl.URL(url)
    except (ValueError, UnicodeError) as exc:
        raise EndpointError(f"{url!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise EndpointError(f"{url!r} is not an http(s) URL with a host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise EndpointError("the URL must not carry credentials; the signature authenticates")
    if parsed.raw_fragment or "#" in url:
        raise EndpointError(
            f"the URL must have no #fragment and at most {MAX_URL_LENGTH} characters"
        )
    port = parsed.port
    if port is None or not 1 <= port <= 65535:
        raise EndpointError(f"{url!r} has port {port}; a port is 1 to 65535")
    # yarl drops brackets around a non-IPv6 host ("[v1.x]"); the stdlib split keeps them.
    if "[" in urlsplit(url).netloc and ":" not in parsed.raw_host:
        raise EndpointError(f"{url!r} has brackets that hold no IPv6 address")
    host = _checked_host(parsed.raw_host, url)
    return Destination(
        scheme=parsed.scheme,
        host=host,
        port=port,
        target=parsed.raw_path_qs if parsed.raw_path else "/" + parsed.raw_path_qs,
        explicit_port=parsed.explicit_port is not None,
    )


def _checked_host(raw_host: str, url: str) -> str:
    if "%" in raw_host:  # an IPv6 zone (fe80::1%eth0) names an interface of this machine
        raise EndpointError(f"{url!r} has an IPv6 zone; a destination is a global address")
    if ":" in raw_host:  # only a bracketed IPv6 literal has a colon here
        try:
            return str(ipaddress.IPv6Address(raw_host))
        except ValueError:
            raise EndpointError(f"{url!r} has an invalid IPv6 address [{raw_host}]") from None
    try:
        return str(ipaddress.IPv4Address(raw_host))
    except ValueError:
        pass
    name = raw_host[:-1] if raw_host.endswith(".") else raw_host
    if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        # 127.1, 0x7f.1, 2130706433: numbers resolvers read as addresses, not names.
        raise EndpointError(f"{raw_host!r} is neither a host name nor a dotted IPv4 address")
    try:
        return idna.encode(name, uts46=True, std3_rules=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise EndpointError(
            f"{raw_host!r} is not a valid host name ({exc}); labels are 1 to 63 letters, digits "
            "or hyphens, at most 253 characters in all"
        ) from None


def validate_url(url: str, *, allow_private: bool) -> str:
    """``url`` if it may be stored as an endpoint (stripped), else ``EndpointError``."""
    destination = parse_destination(url)
    address = destination.address
    if address is not None and not allow_private and not address.is_global:
        raise EndpointError(
            f"{destination.host} is a private, loopback or link-local address; refused unless "
            "HOKUSAI_WEBHOOK_ALLOW_PRIVATE=1"
        )
    return url.strip()


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


def new_endpoint_row(
    url: str,
    *,
    event_types: list[str],
    model_filter: str | None,
    description: str,
    sealed_secret: str,
    allow_private: bool,
    workspace: str,
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
        "workspace": workspace,
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


def endpoint_rows(conn: Connection, *, workspace: str | None = None) -> list[dict[str, Any]]:
    """Endpoints, oldest first; ``workspace``: only that workspace's."""
    query = select(webhook_endpoints).order_by(webhook_endpoints.c.created_at)
    if workspace is not None:
        query = query.where(webhook_endpoints.c.workspace == workspace)
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
