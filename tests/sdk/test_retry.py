"""The SDK's retry policy and its mapping of error answers to typed errors."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from hokusai.sdk import errors, retry
from hokusai.sdk.config import ClientConfig
from hokusai.sdk.retry import (
    BRIEF_RETRY_TIME,
    MAX_DELAY,
    MAX_RETRY_AFTER,
    Attempt,
    NoAnswer,
    RetryBudget,
)
from hokusai.sdk.transport import error_from_response


def after(status: int | None = None, retry_after: float | None = None, **more: Any) -> Attempt:
    """An attempt that ended with ``status`` (None: no answer, the request never left)."""
    if status is None:
        more.setdefault("no_answer", NoAnswer.NOT_SENT)
    return Attempt(status=status, retry_after=retry_after, **more)


# ---- RetryBudget ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [None, 502, 503, 504])
def test_transient_failures_are_retried(status: int | None) -> None:
    budget = RetryBudget(max_retry_time=30)
    delay = budget.next_delay(after(status, None))
    assert delay is not None
    assert 0 <= delay <= retry.BASE_DELAY * 2
    assert budget.attempt == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 422, 429, 499, 500, 501])
def test_other_answers_are_never_retried(status: int) -> None:
    budget = RetryBudget(max_retry_time=30)
    assert budget.next_delay(after(status, None)) is None
    assert budget.attempt == 0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_a_4xx_is_not_retried_even_with_retry_after(status: int) -> None:
    assert RetryBudget(max_retry_time=30).next_delay(after(status, 1.0)) is None


def test_429_is_retried_only_when_the_server_says_when() -> None:
    assert RetryBudget(max_retry_time=30).next_delay(after(429, None)) is None
    assert RetryBudget(max_retry_time=30).next_delay(after(429, 2.0)) == 2.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(status: int) -> None:
    budget = RetryBudget(max_retry_time=30)
    assert budget.next_delay(after(status, 3.5)) == 3.5
    assert budget.next_delay(after(status, 0.0)) == 0.0
    assert budget.next_delay(after(status, -4.0)) == 0.0


def test_retry_after_is_capped() -> None:
    budget = RetryBudget(max_retry_time=10 * MAX_RETRY_AFTER)
    assert budget.next_delay(after(429, 3600.0)) == MAX_RETRY_AFTER


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    budget = RetryBudget(max_retry_time=2)
    assert budget.next_delay(after(429, 5.0)) is None
    assert budget.next_delay(after(503, 2.0)) is None
    assert budget.next_delay(after(503, 1.5)) == 1.5


def test_delays_grow_exponentially_up_to_the_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    # Full jitter: a random delay up to the bound; take the bound itself to see it.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    budget = RetryBudget(max_retry_time=1000)
    delays = [budget.next_delay(after(None, None)) for _ in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, MAX_DELAY, MAX_DELAY, MAX_DELAY]


def test_jitter_stays_within_the_bound() -> None:
    budget = RetryBudget(max_retry_time=1000)
    for attempt in range(1, 40):
        delay = budget.next_delay(after(503, None))
        assert delay is not None
        assert 0 <= delay <= min(MAX_DELAY, retry.BASE_DELAY * 2**attempt)


def test_the_budget_bounds_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting each delay on a fake clock: the retries stop before the budget is spent."""
    clock = [1000.0]
    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    budget = RetryBudget(max_retry_time=10)
    waited = []
    while (delay := budget.next_delay(after(None, None))) is not None:
        waited.append(delay)
        clock[0] += delay + 0.05  # the attempt itself takes a little time too
        assert len(waited) < 100
    assert waited == [0.5, 1.0, 2.0, 4.0]  # 8 more would pass the 10 s budget
    assert clock[0] - 1000.0 <= 10
    assert budget.remaining() == pytest.approx(10 - 7.5 - 4 * 0.05)

    budget = RetryBudget(max_retry_time=10)
    clock[0] += 9.9
    assert budget.next_delay(after(429, 1.0)) is None
    assert budget.next_delay(after(429, 0.05)) == 0.05
    clock[0] += 1
    assert budget.remaining() == 0.0


def test_no_budget_means_no_retry() -> None:
    budget = RetryBudget(max_retry_time=0)
    assert budget.next_delay(after(None, None)) is None
    assert budget.next_delay(after(503, 0.5)) is None


def test_what_will_not_go_away_is_never_retried() -> None:
    """Unknown host, TLS failure: no budget makes them worth a second try."""
    budget = RetryBudget(max_retry_time=1000)
    assert budget.next_delay(Attempt(no_answer=NoAnswer.PERMANENT)) is None
    assert budget.attempt == 0


def test_refused_is_retried_only_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    budget = RetryBudget(max_retry_time=30)
    waited = 0.0
    while (delay := budget.next_delay(Attempt(no_answer=NoAnswer.REFUSED))) is not None:
        waited += delay
        clock[0] += delay
    assert 0 < waited <= BRIEF_RETRY_TIME < 30
    # The same clock, a connect timeout: the whole budget applies.
    budget = RetryBudget(max_retry_time=30)
    clock[0] += BRIEF_RETRY_TIME + 1
    assert budget.next_delay(Attempt(no_answer=NoAnswer.NOT_SENT)) is not None
    # A smaller budget than the brief one wins.
    assert RetryBudget(max_retry_time=0).next_delay(Attempt(no_answer=NoAnswer.REFUSED)) is None


def test_a_broken_connection_is_retried_only_when_idempotent() -> None:
    broken = NoAnswer.BROKEN
    assert RetryBudget(30).next_delay(Attempt(no_answer=broken, idempotent=True)) is not None
    assert RetryBudget(30).next_delay(Attempt(no_answer=broken, idempotent=False)) is None
    # Never sent: safe for any request.
    never = NoAnswer.NOT_SENT
    assert RetryBudget(30).next_delay(Attempt(no_answer=never, idempotent=False)) is not None


@pytest.mark.parametrize("status", [502, 503, 504])
def test_x_should_retry_false_is_never_retried(status: int) -> None:
    """The gateway's "sent, outcome unknown": even an idempotent request is not retried."""
    for idempotent in (True, False):
        budget = RetryBudget(max_retry_time=30)
        hint = after(status, 1.0, should_retry=False, idempotent=idempotent)
        assert budget.next_delay(hint) is None
        assert budget.attempt == 0


def test_x_should_retry_true_allows_a_write_to_be_retried() -> None:
    # A 502 to a POST is not retried by default (MLflow may have applied it) ...
    assert RetryBudget(30).next_delay(after(502, None, idempotent=False)) is None
    # ... unless the server says it is safe.
    assert RetryBudget(30).next_delay(after(502, None, idempotent=False, should_retry=True))
    # "true" does not make a 4xx retryable.
    assert RetryBudget(30).next_delay(after(400, None, should_retry=True)) is None
    # Without the header: a 503 (never sent to MLflow) is retried even for a POST.
    assert RetryBudget(30).next_delay(after(503, None, idempotent=False)) is not None


def test_should_retry_hint() -> None:
    assert retry.should_retry_hint("false") is False
    assert retry.should_retry_hint(" True ") is True
    assert retry.should_retry_hint(None) is None
    assert retry.should_retry_hint("maybe") is None


def test_answers_not_from_a_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    # An HTML 404/405/400: not a Hokusai gateway, never retried.
    for status in (400, 404, 405):
        assert RetryBudget(30).next_delay(after(status, None, from_gateway=False)) is None
    # A proxy's HTML 502/503/504: retried briefly, like a refused connection.
    clock = [0.0]
    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    budget = RetryBudget(max_retry_time=30)
    assert budget.next_delay(after(503, None, from_gateway=False)) is not None
    clock[0] = BRIEF_RETRY_TIME
    assert budget.next_delay(after(503, None, from_gateway=False)) is None
    assert budget.next_delay(after(503, None)) is not None  # the gateway's own 503


# ---- error_from_response -----------------------------------------------------------------------

CONFIG = ClientConfig(
    api_url="https://registry.example.com",
    api_key="not-used-here",
    key_source="environment",
    url_source="profile default",
)


def answer(
    status: int, body: Any = None, *, text: str | None = None, **headers: str
) -> httpx.Response:
    request = httpx.Request("GET", "https://registry.example.com/api/mlflow/api/2.0/mlflow/x")
    all_headers = {
        "X-Request-ID": "req-123",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    if text is not None:
        return httpx.Response(status, text=text, headers=all_headers, request=request)
    return httpx.Response(status, json=body, headers=all_headers, request=request)


def mlflow_error(code: str, message: str = "what happened") -> dict[str, str]:
    return {"error_code": code, "message": message}


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "UNAUTHENTICATED", errors.AuthenticationError),
        (403, "PERMISSION_DENIED", errors.PermissionDeniedError),
        (404, "ENDPOINT_NOT_FOUND", errors.EndpointNotFoundError),
        (404, "RESOURCE_DOES_NOT_EXIST", errors.NotFoundError),
        (400, "RESOURCE_ALREADY_EXISTS", errors.ConflictError),
        (409, "RESOURCE_ALREADY_EXISTS", errors.ConflictError),
        (429, "REQUEST_LIMIT_EXCEEDED", errors.RateLimitedError),
        (400, "INVALID_PARAMETER_VALUE", errors.APIError),
        (400, "BAD_REQUEST", errors.APIError),
        (500, "INTERNAL_ERROR", errors.ServerError),
    ],
)
def test_mlflow_format_answers_map_to_their_class(
    status: int, code: str, kind: type[errors.APIError]
) -> None:
    error = error_from_response(answer(status, mlflow_error(code)), CONFIG)
    assert type(error) is kind
    assert isinstance(error, errors.APIError)
    assert error.status_code == status
    assert error.error_code == code
    assert error.request_id == "req-123"
    assert error.body == mlflow_error(code)
    assert error.message.startswith("what happened")
    assert str(error).startswith(f"{code}: what happened")
    assert str(error).endswith("(request id req-123)")


def test_authentication_error_says_where_the_key_came_from() -> None:
    error = error_from_response(
        answer(401, mlflow_error("UNAUTHENTICATED", "API key hk_live_Ab… was revoked")), CONFIG
    )
    assert "was revoked" in str(error)
    assert "(key from environment)" in str(error)


def test_rate_limited_error_carries_retry_after() -> None:
    limited = answer(429, mlflow_error("REQUEST_LIMIT_EXCEEDED"), retry_after="7")
    error = error_from_response(limited, CONFIG)
    assert isinstance(error, errors.RateLimitedError)
    assert error.retry_after == 7.0
    no_header = error_from_response(answer(429, mlflow_error("REQUEST_LIMIT_EXCEEDED")), CONFIG)
    assert isinstance(no_header, errors.RateLimitedError)
    assert no_header.retry_after is None
    # An HTTP-date Retry-After is not a number of seconds: treated as absent.
    dated = answer(429, mlflow_error("REQUEST_LIMIT_EXCEEDED"), retry_after="Wed, 21 Oct 2015")
    dated_error = error_from_response(dated, CONFIG)
    assert isinstance(dated_error, errors.RateLimitedError)
    assert dated_error.retry_after is None


@pytest.mark.parametrize(
    ("status", "code"),
    [(502, "BAD_GATEWAY"), (503, "TEMPORARILY_UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")],
)
def test_unavailable_answers(status: int, code: str) -> None:
    error = error_from_response(answer(status, mlflow_error(code, "MLflow is down")), CONFIG)
    assert type(error) is errors.RegistryUnavailableError
    assert error.status_code == status
    assert error.request_id == "req-123"
    # The gateway's own code and message, kept as they came.
    assert error.error_code == code
    assert error.message == "MLflow is down"
    assert str(error) == f"{code}: MLflow is down (request id req-123)"


@pytest.mark.parametrize(
    ("status", "body", "text", "shown"),
    [
        (404, None, "<html><body><h1>Not Found</h1></body></html>", "<h1>Not Found</h1>"),
        (404, {"detail": "Not Found"}, None, '"detail"'),
        (405, None, "Method Not Allowed", "Method Not Allowed"),
        (400, ["not", "an", "object"], None, '"an"'),
        (401, None, "<html>Basic realm required</html>", "Basic realm required"),
    ],
)
def test_non_mlflow_answers_point_at_the_url(
    status: int, body: Any, text: str | None, shown: str
) -> None:
    error = error_from_response(answer(status, body, text=text), CONFIG)
    assert type(error) is errors.EndpointNotFoundError
    assert error.status_code == status
    message = str(error)
    assert "not the Hokusai gateway's error format" in message
    assert "HOKUSAI_API_URL (from profile default)" in message
    assert "https://registry.example.com" in message
    assert f"answered {status}" in message
    assert shown in message


def test_a_non_mlflow_500_is_a_server_error() -> None:
    error = error_from_response(answer(500, text="Internal Server Error"), CONFIG)
    assert type(error) is errors.ServerError
    assert error.status_code == 500
    assert "Internal Server Error" in str(error)
    assert "request id req-123" in str(error)


def test_config_repr_never_shows_the_key() -> None:
    config = ClientConfig(
        api_url="https://registry.example.com", api_key="hk_live_SECRETSECRET", key_source="x"
    )
    assert "hk_live_SECRETSECRET" not in repr(config)
    assert "hk_live_SECRETSECRET" not in str(config)
    assert "registry.example.com" in repr(config)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_non_mlflow_unavailable_answers_are_a_proxy_failing(status: int) -> None:
    error = error_from_response(answer(status, text="<html>502 Bad Gateway</html>"), CONFIG)
    assert type(error) is errors.RegistryUnavailableError
    assert error.status_code == status
    message = str(error)
    assert "not from the Hokusai gateway" in message
    assert "Bad Gateway" in message
    assert "retry later" in message


def test_long_bodies_are_cut_in_the_message() -> None:
    error = error_from_response(answer(404, text="x" * 5000), CONFIG)
    assert "x" * 200 in str(error)
    assert "x" * 201 not in str(error)
