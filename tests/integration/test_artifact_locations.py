"""Clients may not choose where MLflow writes an experiment's artifacts, outside the
platform's artifact root: the request that used to make MLflow write into any directory
of the server is refused, and nothing is created."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import MakeGateway, RunningGateway

pytestmark = pytest.mark.integration

API = "/api/mlflow/api/2.0/mlflow"
AJAX = "/api/mlflow/ajax-api/2.0/mlflow"


def create(gateway: RunningGateway, key: str, name: str, **body: object) -> httpx.Response:
    return httpx.post(
        gateway.url + API + "/experiments/create",
        json={"name": name, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def exists(gateway: RunningGateway, key: str, name: str) -> bool:
    response = httpx.get(
        gateway.url + API + "/experiments/get-by-name",
        params={"experiment_name": name},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    return response.status_code == 200


def test_an_artifact_location_outside_the_root_is_refused(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    key = gateway.create_key(Scope.WRITE)
    target = tmp_path / "any" / "dir"
    refused = [
        str(target),
        f"file://{target}",
        "mlflow-artifacts:/../../escape",
        "mlflow-artifacts:/ok/%2e%2e/%2E%2E/escape",
        "mlflow-artifacts://other-host/place",
        "s3://someone-elses-bucket/x",
    ]
    for location in refused:
        name = f"loc-{uuid.uuid4().hex[:8]}"
        response = create(gateway, key, name, artifact_location=location)
        assert response.status_code == 400, (location, response.text)
        body = response.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "mlflow-artifacts:/" in body["message"]
        assert "Nothing was created" in body["message"]
        assert body["request_id"] == response.headers["x-request-id"]
        assert not exists(gateway, key, name)
    # The UI's twin endpoint, and a location given twice (the last would win in MLflow).
    name = f"loc-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        gateway.url + AJAX + "/experiments/create",
        content=(
            f'{{"name": "{name}", "artifact_location": "mlflow-artifacts:/fine", '
            f'"artifact_location": "{target}"}}'
        ),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert "more than once" in response.json()["message"]
    response = httpx.post(
        gateway.url + AJAX + "/experiments/create",
        json={"name": name, "artifact_location": str(target)},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert not exists(gateway, key, name)
    assert not (tmp_path / "any").exists()

    # Left out (the normal case): created.
    name = f"loc-{uuid.uuid4().hex[:8]}"
    response = create(gateway, key, name)
    assert response.status_code == 200, response.text
    assert exists(gateway, key, name)
    # Under the root: the gateway lets it through, and MLflow with workspaces refuses any
    # chosen location itself (each workspace's artifacts live under its own root).
    name = f"loc-{uuid.uuid4().hex[:8]}"
    response = create(gateway, key, name, artifact_location="mlflow-artifacts:/team-a/place")
    assert response.status_code == 400, response.text
    assert "workspaces are enabled" in response.json()["message"]
    assert not exists(gateway, key, name)


def test_admins_may_be_allowed_any_location(
    mlflow_server: MlflowProcess, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    running = make_gateway(
        f"sqlite:///{tmp_path / 'hokusai.db'}", mlflow_server.url, admin_artifact_locations=True
    )
    location = str(tmp_path / "admin-chosen")
    writer = running.create_key(Scope.WRITE)
    name = f"loc-{uuid.uuid4().hex[:8]}"
    assert create(running, writer, name, artifact_location=location).status_code == 400
    admin = running.create_key(Scope.ADMIN)
    response = create(running, admin, name, artifact_location=location)
    # The gateway let the admin's choice through: MLflow with workspaces answers it
    # (and refuses any chosen location itself), not the gateway's root rule.
    assert response.status_code == 400, response.text
    assert "workspaces are enabled" in response.json()["message"]
    assert "mlflow-artifacts:/" not in response.json()["message"]


def test_workspace_locations_outside_the_root_never_reach_mlflow(gateway: RunningGateway) -> None:
    # Workspace administration needs an admin key; even that key may not point MLflow's
    # default artifact root or trace archive at the server's disk or a foreign bucket.
    admin = gateway.create_key(Scope.ADMIN)
    headers = {"Authorization": f"Bearer {admin}"}
    workspaces = gateway.url + "/api/mlflow/api/3.0/mlflow/workspaces"
    attempts = [
        ("POST", workspaces, {"name": "team-a", "default_artifact_root": "/srv/anywhere"}),
        (
            "PATCH",
            workspaces + "/team-a",
            {"trace_archival_config": {"location": "s3://someone-elses-bucket/traces"}},
        ),
    ]
    for method, url, body in attempts:
        response = httpx.request(method, url, json=body, headers=headers, timeout=60)
        assert response.status_code == 400, response.text
        answer = response.json()
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "Nothing was created or changed" in answer["message"]
        assert answer["request_id"] == response.headers["x-request-id"]
