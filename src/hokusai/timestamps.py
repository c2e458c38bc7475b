"""Time as the stores and their records keep it: always UTC.

SQLite hands datetimes back without their zone; everything stored is UTC, so a naive
value read back is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
