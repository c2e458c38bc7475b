"""Durations and points in time as people type them: ``30d``, ``12h``, ``2026-05-01T12:00``.

Pure functions with range checks, shared by every front-end (a key's ``--expires-in``, the
``--since`` of ``hokusai audit`` and ``webhooks replay``, ``hokusai gc --older-than``, the
same fields over HTTP). Out-of-range input is an :class:`~hokusai.errors.InvalidInput`
naming the allowed range, never an ``OverflowError`` from deep inside ``datetime``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hokusai.errors import InvalidInput
from hokusai.timestamps import utcnow

_DURATION = re.compile(r"^(\d{1,12})([smhdw])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# The longest duration accepted anywhere (key lifetimes, --since, gc ages): ten years.
# Beyond it, "now + duration" stops being a date the stores and Python can hold.
MAX_DURATION = timedelta(days=3650)
# The times a store can compare against once in UTC.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` → a timedelta, from 1 s to 3650 d.

    >>> parse_duration("2w")
    datetime.timedelta(days=14)
    """
    match = _DURATION.match(text.strip())
    if not match or int(match[1]) == 0:
        raise InvalidInput(
            f"{text!r} is not a duration: use a positive number and a unit, e.g. 30d, 12h, 90m"
        )
    number, unit = int(match[1]), _UNITS[match[2]]
    if MAX_DURATION // timedelta(**{unit: 1}) < number:
        raise InvalidInput(_out_of_range(repr(text)))
    return timedelta(**{unit: number})


def check_duration(value: timedelta) -> timedelta:
    """``value`` if it is positive and at most :data:`MAX_DURATION`."""
    if value <= timedelta(0):
        raise InvalidInput(f"a duration must be positive, not {value}")
    if value > MAX_DURATION:
        raise InvalidInput(_out_of_range(str(value)))
    return value


def _out_of_range(shown: str) -> str:
    shown = shown if len(shown) <= 40 else shown[:37] + "…"
    return f"{shown} is out of range: a duration is between 1s and {MAX_DURATION.days}d (ten years)"


def check_time(value: datetime, what: str = "") -> datetime:
    """``value`` in UTC (naive means UTC), if it lies between year 1 and 9999 in UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        in_utc: datetime | None = value.astimezone(UTC)
    except OverflowError:  # an offset pushed it past what a datetime can hold
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc <= LATEST:
        raise InvalidInput(
            f"{what + ' ' if what else ''}{value.isoformat()} is out of range: a time is "
            f"between {_utc_text(EARLIEST)} and {_utc_text(LATEST)} in UTC"
        )
    return in_utc


def _utc_text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")  # strftime drops year 1's zeros


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A duration back from ``now`` (``1h``, ``7d``) or an ISO time (UTC if naive).

    >>> parse_since("1h", now=datetime(2030, 1, 1, 12, tzinfo=UTC)).isoformat()
    '2030-01-01T11:00:00+00:00'
    """
    now = now or utcnow()
    text = text.strip()
    if re.match(r"^\d+[smhdw]\Z", text):
        return check_time(now - parse_duration(text), f"{text!r} back from now is")
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        if re.match(r"^[+-]?\d{5,}-", text):
            raise InvalidInput(
                f"{text!r} is out of range: a time is between {_utc_text(EARLIEST)} and "
                f"{_utc_text(LATEST)} in UTC"
            ) from None
        raise InvalidInput(
            f"{text!r} is neither a duration (1h, 7d) nor an ISO time (2030-01-01T12:00)"
        ) from None
    return check_time(start)
