"""Two teams on one registry, through a real gateway in front of a real MLflow with
workspaces: each sees only its own models, runs and artifacts, both may have "LSCOR",
model-name patterns, protected aliases and the promotion gate hold, and no version can
be made from another team's run. Twice: the auth store and MLflow's store both on SQLite,
and both on PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.timestamps import utcnow
from hokusai.workspaces import store as workspace_store
from hokusai.workspaces.records import DEFAULT_PROTECTED_ALIASES, WorkspaceRecord
from tests.helpers import (
    POSTGRES_ENV,
    RunningGateway,
    ServeGateway,
    gateway_settings,
    mlflow_running,
    postgres_database,
    reread_tracking_uri,
    start_gateway,
)

pytestmark = pytest.mark.integration

V2 = "/api/mlflow/api/2.0/mlflow"


def make_workspace(gateway: RunningGateway, name: str, *, gate: bool = False) -> None:
    """A workspace in MLflow and in the auth store, as the platform makes one."""
    answer = httpx.post(
        gateway.gateway.settings.mlflow_url + "/api/3.0/mlflow/workspaces",
        json={"name": name, "description": name},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    now = utcnow()
    with gateway.gateway.engine.begin() as conn:
        workspace_store.insert_workspace(
            conn,
            record=WorkspaceRecord(name, name, DEFAULT_PROTECTED_ALIASES, gate, now, now),
        )


@dataclass
class Team:
    workspace: str
    write: httpx.Client
    promote: httpx.Client
    admin: httpx.Client
    write_key: str

    def close(self) -> None:
        for client in (self.write, self.promote, self.admin):
            client.close()


def team(gateway: RunningGateway, workspace: str) -> Team:
    def client(scope: Scope) -> tuple[httpx.Client, str]:
        key = gateway.create_key(scope, workspace=workspace)
        return (
            httpx.Client(
                base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ),
            key,
        )

    write, write_key = client(Scope.WRITE)
    return Team(workspace, write, client(Scope.PROMOTE)[0], client(Scope.ADMIN)[0], write_key)


@pytest.fixture(scope="module")
def mlflow_on_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowProcess]:
    """MLflow with workspaces on a PostgreSQL store of its own."""
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    root = tmp_path_factory.mktemp("mlflow-postgres")
    with postgres_database() as url, mlflow_running(root, url) as process:
        yield process


@pytest.fixture(params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, mlflow_server: MlflowProcess
) -> Iterator[RunningGateway]:
    """A gateway whose auth store and MLflow store are both SQLite, or both PostgreSQL."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            store, mlflow_url = f"sqlite:///{tmp_path / 'hokusai.db'}", mlflow_server.url
        else:
            mlflow_url = request.getfixturevalue("mlflow_on_postgres").url
            store = stack.enter_context(postgres_database())
        running = start_gateway(gateway_settings(store, mlflow_url, tmp_path))
        stack.callback(running.stop)
        yield running


@pytest.fixture
def teams(stack: RunningGateway) -> Iterator[tuple[Team, Team]]:
    gateway = stack
    suffix = uuid.uuid4().hex[:6]
    a, b = f"team-a-{suffix}", f"team-b-{suffix}"
    make_workspace(gateway, a)
    make_workspace(gateway, b, gate=True)
    pair = team(gateway, a), team(gateway, b)
    yield pair
    for t in pair:
        t.close()


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def refused(answer: httpx.Response, *phrases: str) -> dict[str, Any]:
    assert answer.status_code == 403, answer.text
    body = dict(answer.json())
    assert body["error_code"] == "PERMISSION_DENIED"
    for phrase in phrases:
        assert phrase in body["message"], body["message"]
    return body


def registered_run(client: httpx.Client) -> tuple[str, str]:
    """A run of the caller's workspace: (run id, its artifact URI)."""
    experiment = ok(client.post(f"{V2}/experiments/create", json={"name": uuid.uuid4().hex}))
    run = ok(client.post(f"{V2}/runs/create", json={"experiment_id": experiment["experiment_id"]}))
    info = run["run"]["info"]
    return info["run_id"], info["artifact_uri"]


def new_version(client: httpx.Client, name: str, **tags: str) -> str:
    run_id, _ = registered_run(client)
    client.post(f"{V2}/registered-models/create", json={"name": name})
    version = ok(
        client.post(
            f"{V2}/model-versions/create",
            json={
                "name": name,
                "source": f"runs:/{run_id}/model",
                "run_id": run_id,
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        )
    )
    return str(version["model_version"]["version"])


def test_two_teams_are_isolated_and_both_have_lscor(teams: tuple[Team, Team]) -> None:
    a, b = teams
    assert new_version(a.write, "LSCOR") == "1"
    assert new_version(b.write, "LSCOR") == "1"  # the same name, another team
    only_a = f"a-only-{uuid.uuid4().hex[:6]}"
    new_version(a.write, only_a)

    # B sees none of A's models: search, get, versions.
    found = ok(b.write.get(f"{V2}/registered-models/search", params={"max_results": 1000}))
    names = {m["name"] for m in found.get("registered_models", [])}
    assert only_a not in names and "LSCOR" in names
    missing = b.write.get(f"{V2}/registered-models/get", params={"name": only_a})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # ...cannot change or delete them: MLflow does not find them in B's workspace.
    alias = b.promote.post(
        f"{V2}/registered-models/alias", json={"name": only_a, "alias": "x", "version": "1"}
    )
    assert alias.status_code == 404, alias.text
    gone = b.admin.request("DELETE", f"{V2}/registered-models/delete", json={"name": only_a})
    assert gone.status_code == 404, gone.text
    assert ok(a.write.get(f"{V2}/registered-models/get", params={"name": only_a}))


def test_a_client_sent_workspace_must_be_the_keys_own(teams: tuple[Team, Team]) -> None:
    a, b = teams
    body = refused(
        a.write.get(f"{V2}/registered-models/search", headers={"X-MLflow-Workspace": b.workspace}),
        f"'{b.workspace}'",
        f"belongs to workspace '{a.workspace}'",
    )
    assert body["details"]["refused_by"] == "workspace"
    # Naming its own workspace is fine.
    ok(a.write.get(f"{V2}/registered-models/search", headers={"X-MLflow-Workspace": a.workspace}))


def test_no_version_from_another_teams_run_or_storage(teams: tuple[Team, Team]) -> None:
    a, b = teams
    run_id, artifact_uri = registered_run(a.write)
    b.write.post(f"{V2}/registered-models/create", json={"name": "Stolen"})
    for source, extra in (
        (f"runs:/{run_id}/model", {"run_id": run_id}),
        (f"{artifact_uri}/model", {"run_id": run_id}),
        ("s3://bucket/elsewhere/model", {}),
        ("file:///etc", {}),
    ):
        body = refused(
            b.write.post(
                f"{V2}/model-versions/create", json={"name": "Stolen", "source": source, **extra}
            ),
            "must come from the workspace's own",
        )
        assert body["details"]["refused_by"] == "source"
    versions = ok(b.write.get(f"{V2}/model-versions/search", params={"filter": "name='Stolen'"}))
    assert versions.get("model_versions", []) == []
    # B's own run is fine.
    own_run, own_uri = registered_run(b.write)
    ok(
        b.write.post(
            f"{V2}/model-versions/create",
            json={"name": "Stolen", "source": f"{own_uri}/model", "run_id": own_run},
        )
    )


def test_model_patterns_limit_a_write_key(stack: RunningGateway, teams: tuple[Team, Team]) -> None:
    gateway = stack
    a, _ = teams
    key = gateway.create_key(Scope.WRITE, workspace=a.workspace, models=("LSCOR*",))
    with httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as limited:
        ok(limited.post(f"{V2}/registered-models/create", json={"name": "LSCOR-v2"}))
        body = refused(
            limited.post(f"{V2}/registered-models/create", json={"name": "XRAY"}),
            "model 'XRAY'",
            "'LSCOR*'",
        )
        assert body["details"] == {**body["details"], "refused_by": "model_pattern"}
        refused(
            limited.post(
                f"{V2}/registered-models/rename", json={"name": "LSCOR-v2", "new_name": "XRAY"}
            ),
            "'LSCOR*'",
        )
        # Reads inside the workspace stay open.
        ok(limited.get(f"{V2}/registered-models/search"))


def test_protected_aliases_need_promote_and_the_gate_needs_the_metric(
    teams: tuple[Team, Team],
) -> None:
    a, b = teams
    version = new_version(a.write, "LSCOR")
    body = refused(
        a.write.post(
            f"{V2}/registered-models/alias",
            json={"name": "LSCOR", "alias": "production", "version": version},
        ),
        "alias 'production' is protected",
        "'promote'",
    )
    assert body["details"]["refused_by"] == "protected_alias"
    ok(
        a.write.post(  # an alias nobody protects
            f"{V2}/registered-models/alias",
            json={"name": "LSCOR", "alias": "candidate", "version": version},
        )
    )
    ok(
        a.promote.post(
            f"{V2}/registered-models/alias",
            json={"name": "LSCOR", "alias": "production", "version": version},
        )
    )
    refused(
        a.write.request(
            "DELETE", f"{V2}/registered-models/alias", json={"name": "LSCOR", "alias": "production"}
        ),
        "protected",
    )
    # MLflow's older promotion, a version's stage, is protected by the same list.
    stage = {"name": "LSCOR", "version": version, "archive_existing_versions": False}
    refused(
        a.write.post(
            f"{V2}/model-versions/transition-stage", json={**stage, "stage": "Production"}
        ),
        "'production' is protected",
    )
    ok(a.write.post(f"{V2}/model-versions/transition-stage", json={**stage, "stage": "Staging"}))
    ok(
        a.promote.post(
            f"{V2}/model-versions/transition-stage", json={**stage, "stage": "Production"}
        )
    )

    # B gates its protected aliases on the version's measured metric.
    metric = {"benchmark_metric": "auroc", "hokusai_token_id": "LSCOR"}
    weak = new_version(b.write, "LSCOR", benchmark_value="0.9", measured_value="0.8", **metric)
    strong = new_version(b.write, "LSCOR", benchmark_value="0.9", measured_value="0.95", **metric)
    bare = new_version(b.write, "LSCOR")
    for failing in (weak, bare):
        body = refused(
            b.promote.post(
                f"{V2}/registered-models/alias",
                json={"name": "LSCOR", "alias": "champion", "version": failing},
            ),
            "does not pass",
        )
        assert body["details"]["refused_by"] == "promotion_gate"
    ok(
        b.promote.post(
            f"{V2}/registered-models/alias",
            json={"name": "LSCOR", "alias": "champion", "version": strong},
        )
    )


def test_the_stock_client_lands_in_its_keys_workspace(
    stack: RunningGateway, teams: tuple[Team, Team], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = stack
    a, b = teams
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gateway.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", a.write_key)
    reread_tracking_uri()
    name = f"stock-{uuid.uuid4().hex[:6]}"
    client = MlflowClient()
    client.create_registered_model(name)
    experiment_id = client.create_experiment(name)
    run = client.create_run(experiment_id)
    client.log_text(run.info.run_id, "weights", "model/weights.txt")
    assert client.get_registered_model(name).name == name
    assert ok(a.write.get(f"{V2}/registered-models/get", params={"name": name}))
    assert b.write.get(f"{V2}/registered-models/get", params={"name": name}).status_code == 404
    MlflowClient().create_model_version(
        name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    # A's artifacts and models cannot be read with B's key, by any path.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", b.write_key)
    with pytest.raises(MlflowException) as raised:
        mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert "RESOURCE_DOES_NOT_EXIST" in str(raised.value) or "not found" in str(raised.value)
    with pytest.raises(MlflowException):
        MlflowClient().download_artifacts(run.info.run_id, "model/weights.txt")
    path = run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    stolen = b.write.get(f"/api/mlflow/api/2.0/mlflow-artifacts/artifacts/{path}/model/weights.txt")
    assert stolen.status_code in (400, 403, 404), stolen.text
    assert "weights" not in stolen.text


def test_an_mlflow_store_from_before_workspaces_is_the_default_workspace(
    tmp_path: Path, store_url: str, serve_gateway: ServeGateway
) -> None:
    """Models registered before MLflow ran with workspaces are found in ``default``."""
    database = f"sqlite:///{tmp_path / 'mlflow-before.db'}"
    before = MlflowClient(tracking_uri=database, registry_uri=database)
    before.create_registered_model("LSCOR-legacy", description="registered single-tenant")
    with mlflow_running(tmp_path, database) as process:
        running = serve_gateway(gateway_settings(store_url, process.url, tmp_path / "home"))
        key = running.create_key(Scope.READ)
        with httpx.Client(
            base_url=running.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as reader:
            model = ok(reader.get(f"{V2}/registered-models/get", params={"name": "LSCOR-legacy"}))
        assert model["registered_model"]["description"] == "registered single-tenant"
