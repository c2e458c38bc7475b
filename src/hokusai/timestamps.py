"""Time as the stores and their records keep it: always UTC.

SQLite hands datetimes back without their zone; everything stored is UTC, so a naive
value read back is UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def system_clock() -> datetime:
    return datetime.now(UTC)


# What utcnow() reads. Every decision by the time of day (a key's or a session's expiry,
# the time written on an audit row) asks utcnow(), so replacing this one callable moves
# them all together: tests move it forward instead of sleeping.
clock: Callable[[], datetime] = system_clock


def utcnow() -> datetime:
    return clock()


def as_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
