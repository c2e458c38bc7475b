"""The in-flight bound per key and the artifact-location rule, as pure functions."""

from __future__ import annotations

import json

import pytest

from hokusai.gateway.artifact_locations import check_artifact_location
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.limits import InFlightLimit, per_key_limit

ROOT = "mlflow-artifacts:/"


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
        check_artifact_location(
            json.dumps({"name": "x", "artifact_location": location}).encode(), ROOT
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
    check_artifact_location(json.dumps(body).encode(), ROOT)
