"""The domain error tree and its two renderings: HTTP status and CLI exit code."""

from __future__ import annotations

import pytest
import typer

from hokusai import errors
from hokusai.cli.errors import EXIT_CODES, exit_code, exit_with, render
from hokusai.errors import (
    HTTP_STATUS,
    Conflict,
    DomainError,
    ErrorCode,
    InternalError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    from_answer,
    http_status,
)
from hokusai.gateway.errors import GatewayError, domain_answer

SUBCLASSES = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, DomainError)
              and c not in (DomainError, errors._Coded)]  # fmt: skip


def test_every_code_has_an_http_status_and_an_exit_code() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode) == set(EXIT_CODES)
    assert all(code != 0 for code in EXIT_CODES.values())


# MLflow's own mapping (mlflow.protos.databricks_pb2), which clients rely on.
MLFLOW_STATUS = {
    "INVALID_PARAMETER_VALUE": 400, "BAD_REQUEST": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "ENDPOINT_NOT_FOUND": 404, "RESOURCE_DOES_NOT_EXIST": 404,
    "RESOURCE_ALREADY_EXISTS": 400, "REQUEST_LIMIT_EXCEEDED": 429, "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "INVALID_STATE": 400,
}  # fmt: skip


def test_http_statuses_are_the_ones_the_gateway_answers_with() -> None:
    """The gateway's answers use this one table; no status a client sees changed."""
    assert {code.value: status for code, status in HTTP_STATUS.items()} == MLFLOW_STATUS
    for code in ErrorCode:
        assert GatewayError(code, "m").status == MLFLOW_STATUS[code.value]


@pytest.mark.parametrize("cls", SUBCLASSES, ids=lambda c: c.__name__)
def test_a_domain_error_is_answered_with_its_code_status_and_message(
    cls: type[DomainError],
) -> None:
    error = PermissionDenied("no", needed="admin") if cls is PermissionDenied else cls("no")  # type: ignore[call-arg, arg-type]
    answer = domain_answer(error)
    assert (answer.error_code, answer.status, answer.message) == (
        error.code,
        MLFLOW_STATUS[error.code.value],
        "no",
    )


def test_a_rate_limit_is_answered_with_retry_after_in_whole_seconds() -> None:
    assert domain_answer(errors.RateLimited("slow", retry_after=0.2)).headers == {
        "Retry-After": "1"
    }
    assert domain_answer(errors.RateLimited("slow", retry_after=2.5)).headers == {
        "Retry-After": "3"
    }
    assert domain_answer(errors.RateLimited("slow")).headers == {}


def test_the_docstring_draws_every_class() -> None:
    assert errors.__doc__ is not None
    for cls in SUBCLASSES:
        assert f"── {cls.__name__} " in errors.__doc__, cls.__name__
        assert cls.code.value in errors.__doc__


@pytest.mark.parametrize("cls", SUBCLASSES, ids=lambda c: c.__name__)
def test_each_error_carries_its_code_and_survives_a_round_trip(cls: type[DomainError]) -> None:
    error = PermissionDenied("no", needed="admin") if cls is PermissionDenied else cls("no")  # type: ignore[call-arg, arg-type]
    assert isinstance(error, DomainError) and error.code is cls.code
    assert error.http_status == http_status(cls.code) and str(error) == "no"
    again = from_answer(error.code.value, error.message)
    assert type(again) is cls and again.code is error.code and again.message == "no"


def test_errors_are_also_the_builtin_they_mean() -> None:
    """Code that catches ValueError or LookupError keeps working as front-ends move over."""
    assert isinstance(InvalidInput("x"), ValueError)
    assert isinstance(NotFound("x"), LookupError)
    assert not isinstance(Conflict("x"), ValueError)


def test_extra_fields() -> None:
    denied = PermissionDenied("needs admin", needed="admin")
    assert (denied.needed, denied.reason) == ("admin", "role")
    assert RateLimited("slow down", retry_after=2.5).retry_after == 2.5
    assert NotFound("x").reason == "resource_does_not_exist"
    assert DomainError(ErrorCode.BAD_REQUEST, "odd").http_status == 400


def test_an_unknown_answer_code_is_an_internal_error_keeping_it() -> None:
    error = from_answer("SOMETHING_NEW", "hm")
    assert isinstance(error, InternalError) and error.message == "SOMETHING_NEW: hm"
    assert from_answer("BAD_REQUEST", "x").code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (InvalidInput("bad --since"), 2, "error: bad --since"),
        (NotFound("no key 'k'"), 1, "error: no key 'k'"),
        (PermissionDenied("needs 'admin'", needed="admin"), 4, "error: needs 'admin'"),
        (errors.Unauthenticated("no key"), 3, "error: no key"),
        (errors.Unavailable("store down"), 5, "error: store down"),
        (InternalError("oops"), 70, "error (INTERNAL_ERROR): oops"),
    ],
)
def test_cli_rendering(
    error: DomainError, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (exit_code(error), render(error)) == (code, line)
    raised = exit_with(error)
    assert isinstance(raised, typer.Exit) and raised.exit_code == code
    captured = capsys.readouterr()
    assert captured.err.strip() == line and captured.out == ""


def test_a_message_with_brackets_is_printed_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    exit_with(InvalidInput("use [red] or [bold]"))
    assert capsys.readouterr().err.strip() == "error: use [red] or [bold]"
