"""Durations and points in time as people type them: ``30d``, ``12h``, ``2026-05-01T12:00``.

Pure functions with range checks, shared by every front-end (a key's ``--expires-in``, the
``--since`` of ``hokusai audit`` and ``webhooks replay``, the same fields over HTTP).
Out-of-range input is an :class:`~hokusai.errors.InvalidInput` naming the allowed range,
never an ``OverflowError`` from deep inside ``datetime``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hokusai.errors import InvalidInput

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# A century: longer than any credential should live, and far inside what a datetime holds.
MAX_DURATION = timedelta(days=36_500)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` → a timedelta of at most 36500 days.

    >>> parse_duration("2w")
    datetime.timedelta(days=14)
    """
    match = _DURATION.match(text.strip())
    if not match or not match[1].strip("0"):
        raise InvalidInput(
            f"{text!r} is not a duration: use a positive number and a unit, e.g. 30d, 12h, 90m"
        )
    if len(match[1].lstrip("0")) > 12:  # far past the limit (and int() of it is costly)
        raise InvalidInput(_too_long(repr(text)))
    count, unit = int(match[1]), _UNITS[match[2]]
    if count * timedelta(**{unit: 1}).total_seconds() > MAX_DURATION.total_seconds():
        raise InvalidInput(_too_long(repr(text)))
    return timedelta(**{unit: count})


def check_duration(value: timedelta) -> timedelta:
    """``value`` if it is positive and at most :data:`MAX_DURATION`."""
    if value <= timedelta(0):
        raise InvalidInput(f"a duration must be positive, not {value}")
    if value > MAX_DURATION:
        raise InvalidInput(_too_long(str(value)))
    return value


def _too_long(shown: str) -> str:
    shown = shown if len(shown) <= 40 else shown[:37] + "…"
    return f"{shown} is too long: a duration may be at most {MAX_DURATION.days}d (100 years)"


def check_time(value: datetime, what: str = "the time") -> datetime:
    """``value`` in UTC (naive means UTC), if it lies between 1970 and 9999."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        in_range = EARLIEST <= value <= LATEST
        utc = value.astimezone(UTC)
    except OverflowError:  # an offset pushed it past what a datetime can hold
        in_range = False
    if not in_range:
        raise InvalidInput(
            f"{what} {value.isoformat()} is out of range: "
            f"use a time between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
        )
    return utc


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A duration back from ``now`` (``1h``, ``7d``) or an ISO time (UTC if naive).

    >>> parse_since("1h", now=datetime(2030, 1, 1, 12, tzinfo=UTC)).isoformat()
    '2030-01-01T11:00:00+00:00'
    """
    now = now or datetime.now(UTC)
    text = text.strip()
    if _DURATION.match(text):
        return check_time(now - parse_duration(text), f"{text!r} back from now is")
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        if re.match(r"^[+-]?\d{5,}-", text):
            raise InvalidInput(
                f"{text!r} is out of range: use a time between {EARLIEST:%Y-%m-%d} and "
                f"{LATEST:%Y-%m-%d} (UTC)"
            ) from None
        raise InvalidInput(
            f"{text!r} is neither a duration (1h, 7d) nor an ISO time (2030-01-01T12:00)"
        ) from None
    return check_time(start)
