"""Durations and times given by users: bounded, and out-of-range input names the range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import typer

from hokusai.cli.context import parse_since
from hokusai.gateway.admin_api import DurationOutOfRange, parse_duration, time_in_range


@pytest.mark.parametrize(
    ("text", "expected"),
    [("45s", timedelta(seconds=45)), ("2w", timedelta(weeks=2)), ("3650d", timedelta(days=3650))],
)
def test_durations_in_range(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["999999999d", "3651d", "87601h", "999999999999w", "522w"])
def test_durations_out_of_range_name_the_range(text: str) -> None:
    with pytest.raises(DurationOutOfRange, match="between 1s and 3650d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0d", "1y", "99999999999999999999d", "-1d", "1.5h"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_times_are_utc_and_bounded() -> None:
    plus14 = timezone(timedelta(hours=14))
    new_year = datetime(2026, 1, 1, tzinfo=UTC)
    assert time_in_range(datetime(2026, 1, 1, 14, tzinfo=plus14)) == new_year
    assert time_in_range(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    for value in (
        datetime(1, 1, 1, tzinfo=plus14),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))),
    ):
        range_named = r"out of range.* 0001-01-01T00:00:00Z and 9999-12-31T00:00:00Z"
        with pytest.raises(ValueError, match=range_named):
            time_in_range(value)


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "999999999d"])
def test_cli_since_out_of_range_is_a_usage_error(since: str) -> None:
    with pytest.raises(typer.Exit) as caught:
        parse_since(since)
    assert caught.value.exit_code == 2
