"""Durations and times as typed on a command line or sent in a request, with their ranges:
one definition (``hokusai.durations``) for every front-end."""

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
     ("3650d", MAX_DURATION), ("521w", timedelta(weeks=521))],
)  # fmt: skip
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "0d", "-1d", "1y", "1.5h", "d", "30 d", "1d2h", "99999999999999999999d"]
)
def test_not_durations(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not a duration: use a positive number"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["999999999d", "3651d", "87601h", "999999999999w", "522w"])
def test_too_long_names_the_allowed_range(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"out of range: a duration is between 1s and 3650d"):
        parse_duration(text)
    with pytest.raises(InvalidInput, match="between 1s and 3650d"):
        parse_since(text, now=NOW)


def test_check_duration() -> None:
    assert check_duration(timedelta(days=1)) == timedelta(days=1)
    with pytest.raises(InvalidInput, match="must be positive"):
        check_duration(timedelta(0))
    with pytest.raises(InvalidInput, match="between 1s and 3650d"):
        check_duration(MAX_DURATION + timedelta(seconds=1))


def test_since_is_a_duration_back_or_an_iso_time() -> None:
    assert parse_since("1h", now=NOW) == NOW - timedelta(hours=1)
    assert parse_since("2030-01-01T12:00", now=NOW) == datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert parse_since("2030-01-01T12:00+02:00") == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert parse_since("0001-01-02").tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00+05:00", "9999-12-31T01:00", "10000-01-01", "99999-12-31"]
)
def test_times_outside_year_1_to_9999_name_the_range(text: str) -> None:
    with pytest.raises(
        InvalidInput, match="out of range: a time is between 0001-01-01T00:00:00Z and 9999"
    ):
        parse_since(text, now=NOW)


def test_neither_duration_nor_time() -> None:
    with pytest.raises(InvalidInput, match=r"neither a duration .* nor an ISO time"):
        parse_since("yesterday", now=NOW)


def test_check_time_converts_to_utc_and_bounds() -> None:
    plus14 = timezone(timedelta(hours=14))
    assert check_time(datetime(2026, 1, 1, 14, tzinfo=plus14)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert check_time(datetime(2030, 1, 1)) == datetime(2030, 1, 1, tzinfo=UTC)
    range_named = r"out of range.* 0001-01-01T00:00:00Z and 9999-12-31T00:00:00Z"
    for value in (
        datetime(1, 1, 1, tzinfo=plus14),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))),
    ):
        with pytest.raises(InvalidInput, match=range_named):
            check_time(value)
    with pytest.raises(InvalidInput, match="since 9999-12-31T23:00:00-05:00 is out of range"):
        check_time(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))), "since")
