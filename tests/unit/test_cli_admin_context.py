"""The CLI's admin commands: options checked before anything is touched, and a domain
error shown in one way with its exit code."""

from __future__ import annotations

import pytest
import typer

from hokusai.cli.context import domain_errors, since_option
from hokusai.errors import InvalidInput, NotFound, PermissionDenied


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "999999999d", "yesterday"])
def test_a_bad_since_names_the_option(since: str) -> None:
    with pytest.raises(InvalidInput, match=r"^--since "):
        since_option(since)
    assert since_option(None) is None


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("bad"), 2),
        (NotFound("no key"), 1),
        (PermissionDenied("needs admin", needed="admin"), 4),
    ],
)
def test_a_domain_error_exits_with_its_code(
    error: Exception, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    @domain_errors
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as caught:
        command()
    assert caught.value.exit_code == code
    assert capsys.readouterr().err.strip() == f"error: {error}"
