"""The in-flight bound per key and the artifact-location rule, as pure functions."""

from __future__ import annotations

import json

import pytest

from hokusai.gateway.artifact_locations import check_locations, location_fields
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.limits import InFlightLimit, per_key_limit

ROOT = "mlflow-artifacts:/"
EXPERIMENT = location_fields("POST", "/api/2.0/mlflow/experiments/create")
WORKSPACE = location_fields("PATCH", "/api/3.0/mlflow/workspaces/team-a")
WORKSPACE_FIELDS = {"default_artifact_root", "trace_archival_config"}


@pytest.mark.parametrize(
    ("configured", "pool", "effective"),
    [(0, 100, 50), (0, 4, 2), (0, 2, 1), (0, 1, 1), (10, 100, 10), (500, 100, 99), (3, 4, 3)],
)
def test_no_key_may_hold_the_whole_pool(configured: int, pool: int, effective: int) -> None:
    assert per_key_limit(configured, pool) == effective


def test_in_flight_is_counted_per_key_and_given_back() -> None:
    limit = InFlightLimit(2)
    limit.acquire("a")
    limit.acquire("a")
    limit.acquire("b")  # another key is not affected
    with pytest.raises(GatewayError) as refused:
        limit.acquire("a")
    assert refused.value.status == 429
    assert refused.value.headers == {"Retry-After": "1"}
    limit.release("a")
    limit.acquire("a")
    for _ in range(2):
        limit.release("a")
    assert limit.held("a") == 0


@pytest.mark.parametrize(
    "location",
    [
        "/any/dir",
        "file:///etc",
        "mlflow-artifacts://host/x",
        "mlflow-artifacts:/a/../../b",
        "mlflow-artifacts:/a/%2e%2e/b",
        "mlflow-artifacts:/a/%252e%252e/b",
        "mlflow-artifacts:/a\\..\\b",
        "mlflow-artifacts:/%2fetc",
        "mlflow-artifacts-evil:/x",
        "MLFLOW-ARTIFACTS:/x",
    ],
)
def test_locations_outside_the_root_are_refused(location: str) -> None:
    with pytest.raises(GatewayError) as refused:
        check_locations(
            json.dumps({"name": "x", "artifact_location": location}).encode(), EXPERIMENT, ROOT
        )
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"name": "x", "artifact_location": ""},
        {"name": "x", "artifact_location": "mlflow-artifacts:/"},
        {"name": "x", "artifact_location": "mlflow-artifacts:/team/place"},
    ],
)
def test_locations_under_the_root_pass(body: dict[str, str]) -> None:
    check_locations(json.dumps(body).encode(), EXPERIMENT, ROOT)


@pytest.mark.parametrize(
    ("method", "path", "named"),
    [
        ("POST", "/api/2.0/mlflow/experiments/create", {"artifact_location"}),
        ("POST", "/ajax-api/2.0/mlflow/experiments/create", {"artifact_location"}),
        ("POST", "/api/3.0/mlflow/workspaces", {"default_artifact_root", "trace_archival_config"}),
        (
            "PATCH",
            "/ajax-api/3.0/mlflow/workspaces/t",
            {"default_artifact_root", "trace_archival_config"},
        ),
        ("GET", "/api/3.0/mlflow/workspaces/t", set()),
        ("POST", "/api/2.0/mlflow/runs/create", set()),
        ("PATCH", "/api/3.0/mlflow/workspaces/t/extra", set()),
    ],
)
def test_the_requests_that_name_a_location(method: str, path: str, named: set[str]) -> None:
    assert {field[0] for field in location_fields(method, path)} == named


@pytest.mark.parametrize(
    "body",
    [
        {"default_artifact_root": "/srv/elsewhere"},
        {"trace_archival_config": {"location": "s3://someone-elses-bucket/traces"}},
        {"trace_archival_config": {"retention": "30d", "location": "file:///tmp/x"}},
        {"default_artifact_root": "mlflow-artifacts:/ok", "trace_archival_config": {"location": 7}},
    ],
)
def test_workspace_locations_outside_the_root_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(GatewayError) as refused:
        check_locations(json.dumps({"name": "t", **body}).encode(), WORKSPACE, ROOT)
    assert refused.value.status == 400
    assert "Nothing was created or changed" in refused.value.message


def test_a_nested_location_given_twice_is_refused() -> None:
    body = b'{"trace_archival_config": {"location": "mlflow-artifacts:/a", "location": "/etc"}}'
    with pytest.raises(GatewayError) as refused:
        check_locations(body, WORKSPACE, ROOT)
    assert "trace_archival_config.location is given more than once" in refused.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"name": "t"},
        {"name": "t", "description": "team a"},
        {"trace_archival_config": {"retention": "30d"}},
        {"trace_archival_config": "not an object"},
        {"default_artifact_root": "mlflow-artifacts:/team-a"},
    ],
)
def test_workspace_bodies_without_an_outside_location_pass(body: dict[str, object]) -> None:
    check_locations(json.dumps(body).encode(), WORKSPACE, ROOT)
