"""WorkspaceAdmin against a real MLflow (with workspaces enabled) and a real store:
MLflow's workspace and the platform's row are made and removed together, create and
delete are platform-wide, settings are the workspace admin's, and a deleted workspace's
keys and webhook endpoints stop working."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select, update

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.services import build_services
from hokusai.db.schema import webhook_endpoints, workspaces
from hokusai.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unavailable
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyRejected, KeyService
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.settings import Settings
from hokusai.workspaces.mlflow_api import PATH, MlflowWorkspaces
from hokusai.workspaces.records import DEFAULT_PROTECTED_ALIASES
from tests.admin.support import Admin

WORKSPACE_HEADER = "X-MLflow-Workspace"

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(engine: Engine, tmp_path: Path, mlflow_server: MlflowProcess) -> Admin:
    """The admin services, with MLflow's workspaces at the test MLflow."""
    settings = Settings(
        home=tmp_path,
        database_url=str(engine.url),
        secret_key="admin-tests-secret",
        mlflow_url=mlflow_server.url,
    )
    verifier = KeyService(engine, settings.resolved_secret, cache_seconds=0)
    revoked: list[str] = []
    services = build_services(engine, settings, verifier, on_revoked=revoked.append)
    operator = Actor.operator(Origin.command("tests"), name="operator-on-host")
    return Admin(engine, services, verifier, operator, revoked)


@pytest.fixture
def mlflow(mlflow_server: MlflowProcess) -> MlflowWorkspaces:
    return MlflowWorkspaces(mlflow_server.url)


def unique() -> str:
    """A fresh name: the session's one MLflow serves every test and both stores."""
    return "team-" + uuid.uuid4().hex[:8]


def test_create_makes_both_and_is_audited(admin: Admin, mlflow: MlflowWorkspaces) -> None:
    name = unique()
    record = admin.services.workspaces.create(admin.operator, name, description="GTM")

    assert record.protected_aliases == DEFAULT_PROTECTED_ALIASES
    assert not record.promotion_gate
    assert mlflow.exists(name)
    assert admin.services.workspaces.get(admin.operator, name) == record
    entry = admin.last_audit()
    assert (entry.action, entry.workspace) == ("workspaces.create", None)
    assert entry.detail is not None and entry.detail["mlflow"] == "created"
    with pytest.raises(Conflict, match="already exists"):
        admin.services.workspaces.create(admin.operator, name)
    with pytest.raises(Conflict, match="always exists"):
        admin.services.workspaces.create(admin.operator, "default")


def test_an_mlflow_workspace_that_exists_is_adopted(admin: Admin, mlflow: MlflowWorkspaces) -> None:
    name = unique()
    assert mlflow.create(name) is True
    admin.services.workspaces.create(admin.operator, name, protected_aliases=["prod"])
    entry = admin.last_audit()
    assert entry.detail is not None and entry.detail["mlflow"] == "adopted"
    assert admin.services.workspaces.get(admin.operator, name).protected_aliases == ("prod",)


def test_a_failed_create_leaves_no_mlflow_workspace(admin: Admin, mlflow: MlflowWorkspaces) -> None:
    name = unique()
    admin.break_audit_log()  # the transaction fails after MLflow made its workspace
    with pytest.raises(Unavailable):
        admin.services.workspaces.create(admin.operator, name)
    assert not mlflow.exists(name)
    assert admin.rows(workspaces) == [r for r in admin.rows(workspaces) if r["name"] != name]


def test_without_mlflow_nothing_is_created(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        database_url=str(engine.url),
        secret_key="s",
        mlflow_url="http://127.0.0.1:9",  # nothing listens on the discard port
    )
    services = build_services(engine, settings, KeyService(engine, settings.resolved_secret))
    operator = Actor.operator(Origin.command("tests"))
    with pytest.raises(Unavailable, match="did not answer"):
        services.workspaces.create(operator, unique())
    with engine.connect() as conn:
        assert [r.name for r in conn.execute(select(workspaces.c.name))] == ["default"]


@pytest.mark.parametrize(
    ("name", "aliases", "says"),
    [
        ("Team_A", None, "lowercase letters"),
        ("workspaces", None, "reserved"),
        ("team-x", ["prod uction"], "protected alias"),
    ],
)
def test_bad_input_changes_nothing(
    admin: Admin, name: str, aliases: list[str] | None, says: str
) -> None:
    before = admin.rows(workspaces)
    with pytest.raises(InvalidInput, match=says):
        admin.services.workspaces.create(admin.operator, name, protected_aliases=aliases)
    assert admin.rows(workspaces) == before


def test_who_may_do_what(admin: Admin) -> None:
    a, b = unique(), unique()
    for name in (a, b):
        admin.services.workspaces.create(admin.operator, name)
    team_admin = admin.key_actor(Scope.ADMIN, workspace=a)
    promoter = admin.key_actor(Scope.PROMOTE, workspace=a)
    platform = admin.platform_actor()

    # Create and delete are platform-wide.
    for refused in (team_admin, promoter):
        with pytest.raises(PermissionDenied, match="platform-wide"):
            admin.services.workspaces.create(refused, unique())
        with pytest.raises(PermissionDenied, match="platform-wide"):
            admin.services.workspaces.delete(refused, b)
    # Settings: the workspace's admin, of its own workspace only.
    updated = admin.services.workspaces.update(
        team_admin, a, protected_aliases=["production", "canary"], promotion_gate=True
    )
    assert updated.protected_aliases == ("production", "canary") and updated.promotion_gate
    assert admin.last_audit().detail == {
        "target": a,
        "protected_aliases": [["production", "champion"], ["production", "canary"]],
        "promotion_gate": [False, True],
    }
    assert admin.last_audit().workspace == a
    with pytest.raises(PermissionDenied, match=f"in workspace '{b}'"):
        admin.services.workspaces.update(team_admin, b, promotion_gate=True)
    with pytest.raises(PermissionDenied, match="needs the 'admin' role"):
        admin.services.workspaces.update(promoter, a, promotion_gate=False)
    with pytest.raises(InvalidInput, match="nothing to change"):
        admin.services.workspaces.update(team_admin, a)
    # Reading: one's own workspace; a platform admin every one.
    assert [w.name for w in admin.services.workspaces.list(promoter)] == [a]
    assert admin.services.workspaces.get(promoter, a).name == a
    with pytest.raises(PermissionDenied):
        admin.services.workspaces.get(promoter, b)
    assert {a, b, "default"} <= {w.name for w in admin.services.workspaces.list(platform)}
    with pytest.raises(NotFound):
        admin.services.workspaces.get(platform, unique())


def test_delete_revokes_keys_and_disables_endpoints(admin: Admin, mlflow: MlflowWorkspaces) -> None:
    name = unique()
    admin.services.workspaces.create(admin.operator, name)
    issued = admin.services.keys.create(admin.operator, name="ci", workspace=name)
    other = admin.services.keys.create(admin.operator, name="default's")
    endpoint = admin.services.webhooks.add(admin.operator, "https://hooks.example.com/t")
    with admin.engine.begin() as conn:
        conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint.endpoint.id)
            .values(workspace=name)
        )

    with pytest.raises(InvalidInput, match="cannot be deleted"):
        admin.services.workspaces.delete(admin.operator, "default")
    admin.services.workspaces.delete(admin.platform_actor(), name)

    assert not mlflow.exists(name)
    with pytest.raises(NotFound):
        admin.services.workspaces.get(admin.operator, name)
    with pytest.raises(KeyRejected):
        admin.verifier.authenticate(issued.key)
    assert admin.verifier.authenticate(other.key).id == other.record.id
    assert issued.record.id in admin.revoked
    (row,) = [r for r in admin.rows(webhook_endpoints) if r["id"] == endpoint.endpoint.id]
    assert (row["enabled"], row["disabled_reason"]) == (False, "disabled: workspace deleted")
    entry = admin.last_audit()
    assert entry.action == "workspaces.delete"
    assert entry.detail is not None
    assert (entry.detail["revoked_keys"], entry.detail["disabled_endpoints"]) == (
        [issued.record.id],
        1,
    )
    # Creating a key in a deleted workspace is refused: it no longer exists.
    with pytest.raises(NotFound, match="no workspace"):
        admin.services.keys.create(admin.operator, name="late", workspace=name)


def test_a_workspace_holding_models_is_not_deleted(
    admin: Admin, mlflow_server: MlflowProcess
) -> None:
    name = unique()
    admin.services.workspaces.create(admin.operator, name)
    issued = admin.services.keys.create(admin.operator, name="ci", workspace=name)
    made = httpx.post(
        mlflow_server.url + "/api/2.0/mlflow/registered-models/create",
        json={"name": "LSCOR"},
        headers={WORKSPACE_HEADER: name},
    )
    assert made.status_code == 200, made.text

    with pytest.raises(Conflict, match="still holds MLflow resources") as refused:
        admin.services.workspaces.delete(admin.operator, name)
    assert "registered_models" in refused.value.message
    # Nothing changed: the workspace, its key and MLflow's workspace are all there.
    assert admin.services.workspaces.get(admin.operator, name).name == name
    assert admin.verifier.authenticate(issued.key).id == issued.record.id
    found = httpx.get(mlflow_server.url + f"{PATH}/{name}")
    assert found.status_code == 200
