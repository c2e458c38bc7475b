"""Every typed error of the SDK, produced for real against the gateway and MLflow, with the
message that says what to do.

Longer than most test modules (about 450 lines): one real situation per error class.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hokusai import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    EndpointNotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RegistrationError,
    RegistryUnavailableError,
    ValidationError,
)
from hokusai.keys.format import generate_key
from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from hokusai.sdk.saga import after_each_step
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import RunningGateway, ServeGateway, gateway_settings
from tests.sdk.support import MlflowRest, unique

pytestmark = pytest.mark.integration

MARGIN = 1.5  # seconds of slack on top of max_retry_time for a slow machine


StartGateway = Callable[..., RunningGateway]


@pytest.fixture
def start_own_gateway(
    mlflow_server: MlflowProcess, serve_gateway: ServeGateway, tmp_path: Path
) -> StartGateway:
    """Start gateways with settings and a home of their own; each is stopped after the test."""
    homes = itertools.count()

    def start(**overrides: object) -> RunningGateway:
        home = tmp_path / f"gateway-{next(homes)}"
        home.mkdir()
        store = f"sqlite:///{home}/hokusai.db"
        return serve_gateway(gateway_settings(store, mlflow_server.url, home, **overrides))

    return start


# ---- no gateway, or not the gateway ----------------------------------------------------------


def test_nothing_listening_is_unavailable_within_the_retry_budget(dead_url: str) -> None:
    registry = ModelRegistry(api_key=generate_key("test"), api_url=dead_url, max_retry_time=2)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as raised:
        registry.list_models_by_token("LSCOR")
    elapsed = time.monotonic() - started
    assert elapsed < 2 + MARGIN
    message = str(raised.value)
    assert f"connection refused by {dead_url} (from argument)" in message
    assert "after retrying for" in message
    assert "HOKUSAI_API_URL" in message
    assert "check that it is running" in message

    # No budget: one attempt, at once.
    registry = ModelRegistry(api_key=generate_key("test"), api_url=dead_url, max_retry_time=0)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError):
        registry.check()
    assert time.monotonic() - started < MARGIN


def test_mlflow_server_instead_of_the_gateway(mlflow_server: MlflowProcess) -> None:
    registry = ModelRegistry(
        api_key=generate_key("test"), api_url=mlflow_server.url, max_retry_time=2
    )
    for call in (registry.check, lambda: registry.list_models_by_token("LSCOR")):
        with pytest.raises(EndpointNotFoundError) as raised:
            call()
        message = str(raised.value)
        assert "HOKUSAI_API_URL" in message
        assert "(from argument)" in message
        assert "not the Hokusai gateway's error format" in message
        assert mlflow_server.url in message
        assert raised.value.status_code == 404


def test_wrong_prefix(sdk_gateway: RunningGateway, team_key: str) -> None:
    registry = ModelRegistry(api_key=team_key, api_url=sdk_gateway.url + "/mlflow")
    with pytest.raises(EndpointNotFoundError) as raised:
        registry.list_models_by_token("LSCOR")
    error = raised.value
    assert error.status_code == 404
    assert error.error_code == "ENDPOINT_NOT_FOUND"
    assert error.request_id
    assert f"HOKUSAI_API_URL={sdk_gateway.url}" in str(error)
    assert f"MLFLOW_TRACKING_URI={sdk_gateway.url}/api/mlflow" in str(error)


# ---- keys ------------------------------------------------------------------------------------


def test_missing_key_is_a_configuration_error_before_any_call(dead_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as raised:
        ModelRegistry(api_url=dead_url, max_retry_time=5)
    assert time.monotonic() - started < 1
    message = str(raised.value)
    assert "No API key provided" in message
    assert "HOKUSAI_API_KEY" in message
    assert "hokusai login" in message


@pytest.mark.parametrize(
    ("make_key", "phrases"),
    [
        (lambda good: "sk-not-a-hokusai-key", ["Malformed API key", "hk_live_"]),
        (lambda good: good[:-1] + ("a" if good[-1] != "a" else "b"), ["checksum"]),
        (lambda good: good[:-5], ["wrong length", "truncated"]),
        (lambda good: generate_key("live"), ["Unknown API key", "never issued it"]),
    ],
    ids=["malformed", "mistyped", "truncated", "unknown"],
)
def test_bad_key_names_the_reason(
    sdk_gateway: RunningGateway,
    team_key: str,
    make_key: Callable[[str], str],
    phrases: list[str],
) -> None:
    key = make_key(team_key)
    registry = ModelRegistry(api_key=key, api_url=sdk_gateway.url, max_retry_time=5)
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as raised:
        registry.list_models_by_token("LSCOR")
    assert time.monotonic() - started < MARGIN, "a 401 is never retried"
    error = raised.value
    assert error.status_code == 401
    assert error.error_code == "UNAUTHENTICATED"
    for phrase in phrases:
        assert phrase in str(error)
    assert "(key from argument)" in str(error)
    assert key not in str(error)


def test_revoked_key(sdk_gateway: RunningGateway) -> None:
    key = sdk_gateway.create_key(Scope.WRITE)
    sdk_gateway.gateway.keys.revoke(key)
    registry = ModelRegistry(api_key=key, api_url=sdk_gateway.url)
    with pytest.raises(AuthenticationError) as raised:
        registry.check()
    assert "was revoked" in str(raised.value)
    assert raised.value.request_id


def test_read_key_cannot_register(
    sdk_gateway: RunningGateway,
    saved_lead_model: Path,
    mlflow_rest: MlflowRest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ModelRegistry(api_key=sdk_gateway.create_key(Scope.READ), api_url=sdk_gateway.url)
    experiment = unique("read-only")
    name = unique("denied")
    caplog.set_level("INFO", logger="hokusai.sdk")
    # A 403 is a PermissionDeniedError, registration or not ... (without an alias to set,
    # nothing is asked before the registration's first step: that step is refused)
    with pytest.raises(PermissionDeniedError) as raised:
        registry.register_baseline(
            saved_lead_model, "lead_scoring", name, experiment_name=experiment, alias=None
        )
    error = raised.value
    # ... and still the registration's failure, with its step and what it left.
    assert isinstance(error, RegistrationError)
    assert error.step == "experiment"
    assert error.status_code == 403
    assert error.error_code == "PERMISSION_DENIED"
    assert error.request_id
    assert "failed at step 'experiment'" in str(error)
    assert isinstance(error.__cause__, PermissionDeniedError)
    assert error.cause is error.__cause__
    assert "needs the 'write' role" in str(error)
    assert "has 'read'" in str(error)
    assert error.left_behind == {}
    assert "Nothing was left behind." in str(error)
    assert "hokusai gc" not in str(error)
    # Reported once: by the exception, not also by a log line.
    # (The gateway runs in this process too: only the SDK's own loggers count.)
    said = [r for r in caplog.records if r.name.startswith("hokusai.sdk") and r.levelno >= 20]
    assert said == []
    # Nothing was made.
    response = mlflow_rest.client.get(
        "/api/mlflow/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment}
    )
    assert response.status_code == 404
    response = mlflow_rest.client.get(
        "/api/mlflow/api/2.0/mlflow/registered-models/get", params={"name": name}
    )
    assert response.status_code == 404
    # Reading works with the same key.
    assert registry.list_models_by_token(unique("none")) == []


def test_left_behind_lists_only_what_this_call_created(
    registry: ModelRegistry, saved_lead_model: Path, mlflow_rest: MlflowRest
) -> None:
    class Fault(Exception):
        pass

    def fail_after_run(step: str) -> None:
        if step == "run":
            raise Fault("after run")

    existing = unique("existing")
    mlflow_rest.call("POST", "experiments/create", json={"name": existing})
    for experiment, made in ((existing, False), (unique("new"), True)):
        with after_each_step(fail_after_run), pytest.raises(RegistrationError) as raised:
            registry.register_baseline(
                saved_lead_model, "lead_scoring", unique("left"), experiment_name=experiment
            )
        left = raised.value.left_behind
        assert set(left) == ({"experiment_id", "run_id"} if made else {"run_id"})
        assert ("experiment_id=" in str(raised.value)) is made
        assert type(raised.value) is RegistrationError  # the cause is no SDK error


# ---- the gateway goes away, or says "slow down" ------------------------------------------------


def test_gateway_down_midway(
    start_own_gateway: StartGateway, saved_lead_model: Path, mlflow_rest: MlflowRest
) -> None:
    running = start_own_gateway()
    registry = ModelRegistry(
        api_key=running.create_key(Scope.WRITE), api_url=running.url, max_retry_time=1.5
    )
    registry.check()

    def stop_after_run(step: str) -> None:
        if step == "run":
            running.stop()
            assert not running.thread.is_alive()

    registration_id = unique("down")
    started = time.monotonic()
    with after_each_step(stop_after_run), pytest.raises(RegistrationError) as raised:
        registry.register_baseline(
            saved_lead_model, "lead_scoring", unique("down"), registration_id=registration_id
        )
    error = raised.value
    assert error.step == "metrics"
    assert isinstance(error.__cause__, RegistryUnavailableError)
    assert "The registry is unavailable" in str(error)
    assert ".. " not in str(error)
    assert error.left_behind["run_id"]
    assert time.monotonic() - started < 10
    # The run stays in progress (it could not be marked failed): a leftover for `hokusai gc`.
    tags = mlflow_rest.run_tags(error.left_behind["run_id"])
    assert tags["hokusai.registration_status"] == "in_progress"

    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as unavailable:
        registry.list_models_by_token("LSCOR")
    assert time.monotonic() - started < 1.5 + MARGIN
    assert running.url in str(unavailable.value)


def test_rate_limited_without_waiting_past_the_budget(start_own_gateway: StartGateway) -> None:
    running = start_own_gateway(rate_limit_per_second=0.2, rate_limit_burst=1)
    registry = ModelRegistry(
        api_key=running.create_key(Scope.READ), api_url=running.url, max_retry_time=2
    )
    assert registry.list_models_by_token("LSCOR") == []
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as raised:
        registry.list_models_by_token("LSCOR")
    # The gateway asks for 5 s, more than the 2 s budget: given up at once.
    assert time.monotonic() - started < 2
    error = raised.value
    assert error.retry_after == 5.0
    assert error.status_code == 429
    assert error.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert "rate limit" in str(error)
    assert "Retry-After" in str(error)


def test_rate_limit_within_the_budget_is_waited_out(start_own_gateway: StartGateway) -> None:
    running = start_own_gateway(rate_limit_per_second=1, rate_limit_burst=1)
    registry = ModelRegistry(
        api_key=running.create_key(Scope.READ), api_url=running.url, max_retry_time=5
    )
    assert registry.list_models_by_token("LSCOR") == []
    started = time.monotonic()
    assert registry.list_models_by_token("LSCOR") == []
    assert 0.9 <= time.monotonic() - started < 5


# ---- refused before anything is sent -----------------------------------------------------------


@pytest.fixture
def offline(dead_url: str) -> ModelRegistry:
    """A registry where any network call would raise RegistryUnavailableError."""
    return ModelRegistry(api_key=generate_key("test"), api_url=dead_url, max_retry_time=0)


def test_validation_errors_come_before_any_call(
    offline: ModelRegistry, saved_lead_model: Path, lead_model: object, tmp_path: Path
) -> None:
    def refused(call: Callable[[], object], *phrases: str) -> None:
        with pytest.raises(ValidationError) as raised:
            call()
        for phrase in phrases:
            assert phrase in str(raised.value), str(raised.value)

    tokenized = offline.register_tokenized_model
    refused(
        lambda: tokenized("runs:/abc/model", "LSCOR", "bad id!", "auroc", 0.8),
        "token_id must be 1-64 letters, digits or dashes",
        "'bad id!'",
    )
    refused(
        lambda: tokenized("runs:/abc/model", "LSCOR", "x" * 65, "auroc", 0.8), "token_id must be"
    )
    refused(
        lambda: tokenized("runs:/abc/model", "LSCOR", "LSCOR", "auroc", "0.8"),  # type: ignore[arg-type]
        "baseline_value must be a finite number",
        "'0.8'",
    )
    refused(
        lambda: tokenized("runs:/abc/model", "LSCOR", "LSCOR", "auroc", math.inf),
        "baseline_value must be a finite number",
    )
    refused(
        lambda: tokenized("runs:/abc/model", "LSCOR", "LSCOR", "auroc", True),
        "baseline_value must be a finite number",
    )
    refused(
        lambda: tokenized("s3://bucket/model", "LSCOR", "LSCOR", "auroc", 0.8),
        "model_uri must be a runs:/, models:/ or mlflow-artifacts:/ URI",
    )
    refused(
        lambda: tokenized("runs:/abc/model", "bad/name", "LSCOR", "auroc", 0.8),
        "model name must be",
    )
    refused(
        lambda: tokenized("runs:/abc/model", "LSCOR", "LSCOR", "au!roc", 0.8),
        "metric_name must be",
    )

    baseline = offline.register_baseline
    refused(
        lambda: baseline(saved_lead_model, "lead_scoring", metrics={"auroc": math.nan}),
        "metric 'auroc' must be a finite number",
        "nan",
    )
    refused(
        lambda: baseline(saved_lead_model, "lead_scoring", metrics={"auroc": "high"}),  # type: ignore[dict-item]
        "metric 'auroc' must be a finite number",
    )
    refused(lambda: baseline(saved_lead_model, "lead scoring!"), "model_type must be")
    refused(
        lambda: baseline(saved_lead_model, "lead_scoring", registration_id="has space"),
        "registration_id may hold",
    )
    refused(
        lambda: baseline(saved_lead_model, "lead_scoring", metadata={"notes": "x" * 5001}),
        "longer than 5000 characters",
    )
    refused(lambda: baseline(saved_lead_model, "lead_scoring", alias="bad alias!"), "alias must be")
    refused(lambda: baseline(None, "lead_scoring"), "model is required")
    refused(
        lambda: baseline(str(tmp_path / "missing.pkl"), "lead_scoring"),
        "neither an existing path nor a runs:/ or models:/ URI",
    )
    refused(
        lambda: baseline(object(), "lead_scoring"),
        "cannot register a object",
        "fitted scikit-learn estimator",
    )
    refused(
        lambda: baseline({"weights": [1, 2]}, "lead_scoring"),
        "cannot register a dict",
    )
    refused(lambda: baseline(tmp_path, "lead_scoring"), "directory without an MLmodel file")
    (tmp_path / "model.txt").write_text("not a model")
    refused(
        lambda: baseline(tmp_path / "model.txt", "lead_scoring"),
        "is not a .pkl, .pickle or .joblib file",
    )

    improved = offline.register_improved_model
    refused(lambda: improved(lead_model, "LSCOR/1", {}, "alice"), "delta_metrics must name")
    refused(
        lambda: improved(lead_model, "LSCOR/1", {"auroc": math.nan}, "alice"),
        "metric 'auroc' must be a finite number",
    )
    refused(lambda: improved(lead_model, "LSCOR/1", {"auroc": 0.1}, "  "), "contributor must be")
    refused(
        lambda: improved(lead_model, "LSCOR", {"auroc": 0.1}, "alice"),
        "is not NAME/VERSION, models:/NAME/VERSION or models:/NAME@ALIAS",
    )
    refused(
        lambda: improved(lead_model, "LSCOR/1", {"auroc": 0.1}, "alice", metrics={"f1": math.inf}),
        "metric 'f1' must be a finite number",
    )
    refused(
        lambda: improved(object(), "LSCOR/1", {"auroc": 0.1}, "alice"), "cannot register a object"
    )

    measured = offline.register_measured_model
    refused(
        lambda: measured(lead_model, "LSCOR", "LSCOR", "auroc", 0.8, math.nan),
        "measured_value must be a finite number",
    )
    refused(lambda: measured(lead_model, "LSCOR", "", "auroc", 0.8, 0.9), "token_id must be")

    refused(lambda: offline.list_models_by_token("no spaces"), "token_id must be")
    refused(lambda: offline.get_tokenized_model("bad id!"), "token_id must be")
    refused(lambda: offline.get_model_version("LSCOR/latest"), "is not NAME/VERSION")
    with pytest.raises(ValidationError, match="timeout must be positive"):
        ModelRegistry(api_key=generate_key("test"), api_url=offline.api_url, timeout=0)

    # And the registry really is unreachable: a call that passes validation says so.
    with pytest.raises(RegistryUnavailableError):
        offline.list_models_by_token("LSCOR")


def test_every_api_error_carries_status_code_and_request_id(
    registry: ModelRegistry,
) -> None:
    from hokusai import NotFoundError

    with pytest.raises(NotFoundError) as raised:
        registry.get_model_version(f"{unique('missing')}/1")
    error = raised.value
    assert isinstance(error, APIError)
    assert error.status_code == 404
    assert error.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert error.request_id and error.request_id in str(error)
    assert str(error).startswith("RESOURCE_DOES_NOT_EXIST: ")
