"""Durations and times as typed on a command line or sent in a request, with their ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hokusai.durations import MAX_DURATION, check_duration, check_time, parse_duration, parse_since
from hokusai.errors import InvalidInput

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("45s", timedelta(seconds=45)), ("90m", timedelta(minutes=90)), ("12h", timedelta(hours=12)),
     ("30d", timedelta(days=30)), ("2w", timedelta(weeks=2)), (" 7d ", timedelta(days=7)),
     ("36500d", MAX_DURATION), ("5214w", timedelta(weeks=5214))],
)  # fmt: skip
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "-1d", "1y", "1.5h", "d", "30 d", "1d2h"])
def test_not_durations(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not a duration: use a positive number"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text", ["999999999d", "36501d", "999999999999w", "3153600001s", "9" * 5000 + "d"]
)
def test_too_long_names_the_allowed_range(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"too long: a duration may be at most 36500d"):
        parse_duration(text)
    with pytest.raises(InvalidInput, match="at most 36500d"):
        parse_since(text, now=NOW)


def test_check_duration() -> None:
    assert check_duration(timedelta(days=1)) == timedelta(days=1)
    with pytest.raises(InvalidInput, match="must be positive"):
        check_duration(timedelta(0))
    with pytest.raises(InvalidInput, match="at most 36500d"):
        check_duration(MAX_DURATION + timedelta(seconds=1))


def test_since_is_a_duration_back_or_an_iso_time() -> None:
    assert parse_since("1h", now=NOW) == NOW - timedelta(hours=1)
    assert parse_since("2030-01-01T12:00", now=NOW) == datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert parse_since("2030-01-01T12:00+02:00") == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert parse_since("1970-01-01").tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    ["1969-12-31T23:59", "0001-01-01", "0001-01-01T00:00+05:00", "10000-01-01", "99999-12-31"],
)
def test_times_outside_1970_to_9999_name_the_range(text: str) -> None:
    with pytest.raises(InvalidInput, match="out of range: use a time between 1970-01-01 and"):
        parse_since(text, now=NOW)


def test_a_duration_back_before_1970_is_out_of_range() -> None:
    with pytest.raises(InvalidInput, match=r"back from now is 1930.* out of range"):
        parse_since("36500d", now=NOW)


def test_neither_duration_nor_time() -> None:
    with pytest.raises(InvalidInput, match=r"neither a duration .* nor an ISO time"):
        parse_since("yesterday", now=NOW)


def test_check_time_converts_to_utc_and_bounds() -> None:
    east = timezone(timedelta(hours=9))
    assert check_time(datetime(2030, 1, 1, 9, tzinfo=east)) == datetime(2030, 1, 1, tzinfo=UTC)
    assert check_time(datetime(2030, 1, 1)) == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="since 9999-12-31T23:00:00-05:00 is out of range"):
        check_time(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))), "since")
